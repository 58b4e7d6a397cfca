"""In-process generation and scoring with transformers: no server, and the full next-token distributions.

The engine of the checks (a merged folder must load and generate), of quantize verification (an
FP8 checkpoint must score like its source) and a stand-in for vLLM where none runs: its answers
keep the vLLM engine's contract, so a stage or a test may use either.

- `chat` renders each conversation with the chat template (`engine.chat_template`, else the
  model's, else `PLAIN_TEMPLATE`), generates the batch at once, left-padded, and cuts each answer
  as vLLM does: at the first stop token (counted in `completion_tokens`, not in the text) or stop
  string (left out of the text), "length" when `max_tokens` ran out; a character left incomplete
  at the end is not shown. The request's sampling settings are the only ones: the model's
  generation config gives its stop tokens, not its sampling defaults (a repetition penalty,
  top-k), which vLLM ignores too. A seeded sampled request is generated on its own under its
  seed, so its sample does not depend on its batch.
- `tail_logprobs` (lighteval's multiple-choice requests, `hala eval bench --backend transformers`)
  and `score_replies` (the judge's scoring modes) batch sequences and project only the scored
  positions onto the vocabulary;
- `prompt_logprobs` and `token_logprobs` are one forward pass per sequence; the
  tokens are those the vLLM engine scores (a text prompt with the tokenizer's special tokens, a
  reply cut by `hala.engines.replies`), and a rank counts the tokens at least as likely, as
  vLLM's does.
- `next_token_logprobs` gives whole distributions (verification's KL) and `count_parameters`
  the dtypes the checkpoint loaded in, before the first forward pass (when compressed-tensors
  decompresses an FP8 checkpoint).

The model stays where transformers puts it (the CPU) unless `device_map` says otherwise ("auto"
on GPUs); `trust_remote_code` is the caller's to grant.
"""

from __future__ import annotations

import gc

import torch

from hala.engines.base import PLAIN_TEMPLATE, Chat, Engine, EngineConfig, Generation, SamplingParams


class TransformersEngine(Engine):
    def __init__(self, cfg: EngineConfig, *, device_map: str | None = None, trust_remote_code: bool = False):
        super().__init__(cfg)
        if not cfg.model:
            raise ValueError("engine.model is empty: give the model folder (or hub id) for transformers")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=trust_remote_code)
        dtype = cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(
            cfg.model, dtype=dtype, device_map=device_map, trust_remote_code=trust_remote_code
        )
        self.model.eval()
        self.template = cfg.chat_template or (None if self.tokenizer.chat_template else PLAIN_TEMPLATE)
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        pads = (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, *sorted(self.stop_ids))
        self.pad_id = next((t for t in pads if t is not None), 0)

    @property
    def context_length(self) -> int:
        return self.cfg.max_model_len or int(self.model.config.get_text_config().max_position_embeddings)

    def count_parameters(self, dtype: torch.dtype) -> int:
        """How many parameter tensors the model holds in `dtype`."""
        return sum(1 for p in self.model.parameters() if p.dtype == dtype)

    def prompt_ids(self, chat: Chat) -> list[int]:
        """The token ids the model sees before it answers `chat`."""
        text = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=False, chat_template=self.template
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        prompts = [self.prompt_ids(chat) for chat in conversations]
        if params.temperature > 0 and params.seed is not None:
            results = []
            for prompt in prompts:
                with torch.random.fork_rng():
                    torch.manual_seed(params.seed)
                    results += self._generate([prompt], params)
            return results
        return self._generate(prompts, params) if prompts else []

    def _generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.model.device)
        sampling = (
            {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
            if params.temperature > 0
            else {"do_sample": False}
        )
        if params.stop:
            sampling.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        if params.frequency_penalty:
            sampling["logits_processor"] = [_FrequencyPenalty(params.frequency_penalty, width)]
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=params.max_tokens, repetition_penalty=1.0,
                eos_token_id=sorted(self.stop_ids) or None, pad_token_id=self.pad_id, **sampling,
            )  # fmt: skip
        return [self._answer(len(p), row, params) for p, row in zip(prompts, out[:, width:].tolist())]

    def _answer(self, prompt_tokens: int, row: list[int], params: SamplingParams) -> Generation:
        """One row of generated ids, cut as vLLM cuts an answer (see the module docstring)."""
        end = next((i + 1 for i, token in enumerate(row) if token in self.stop_ids), None)
        kept = row[: end - 1] if end else row
        text = self._decode(kept)
        hits = [text.find(s) for s in params.stop if s in text]
        if hits:  # the tokens up to the one that completed the stop string
            used = next(n for n in range(1, len(kept) + 1) if any(s in self._decode(kept[:n]) for s in params.stop))
            return Generation(text[: min(hits)], "stop", prompt_tokens, used, token_ids=tuple(kept[:used]))
        if end:
            return Generation(text, "stop", prompt_tokens, end, token_ids=tuple(row[:end]))
        return Generation(text, "length", prompt_tokens, len(row), token_ids=tuple(row))

    def _decode(self, ids: list[int]) -> str:
        # vLLM's detokenizer (tokenizers' DecodeStream) holds back text that ends in an incomplete
        # character, so an answer cut inside a multi-byte character ends before it
        return self.tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")

    def token_logprobs(self, sequences: list[list[int]]) -> list[list[tuple[float, int]]]:
        scores = []
        with torch.no_grad():
            for ids in sequences:
                logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0, :-1]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                picked = logprobs.gather(1, torch.tensor(ids[1:], device=logprobs.device)[:, None])
                ranks = (logprobs >= picked).sum(dim=1)
                scores.append(list(zip(picked[:, 0].tolist(), ranks.tolist())))
        return scores

    def tail_logprobs(
        self, sequences: list[list[int]], tails: list[int], batch_tokens: int = 8192, logit_rows: int = 512
    ) -> list[list[tuple[float, int]]]:
        """The decoder runs over every position, the LM head only over the positions scored
        (`logits_to_keep`), which for a large vocabulary (Gemma 3: 262k) is most of a forward pass.

        Each sequence runs without its last token (whose logits score nothing); sequences whose
        runs are the same share one row: the choices of one question, when each is one token, are
        read off one distribution. Rows go in batches of similar length, left-padded so every tail
        ends at the last position, each of at most `batch_tokens` tokens and `logit_rows` rows of
        logits (512 x 262k floats: 0.5 GB)."""
        tails = [min(n, len(s) - 1) for s, n in zip(sequences, tails)]  # the first token has no score
        runs: dict[tuple[int, ...], int] = {}
        row_of = [runs.setdefault(tuple(s[:-1]), len(runs)) for s in sequences]
        rows = [list(run) for run in runs]
        need = [0] * len(rows)
        asks: list[list[int]] = [[] for _ in rows]  # the sequences each row answers
        for i, (row, n) in enumerate(zip(row_of, tails)):
            need[row] = max(need[row], n)
            asks[row].append(i)
        scores: list[list[tuple[float, int]]] = [[] for _ in sequences]
        order = sorted((r for r in range(len(rows)) if need[r]), key=lambda r: len(rows[r]))
        start = 0
        while start < len(order):
            stop, keep = start + 1, need[order[start]]
            while stop < len(order):
                size, wider = stop + 1 - start, max(keep, need[order[stop]])
                if len(rows[order[stop]]) * size > batch_tokens or wider * size > logit_rows:
                    break
                stop, keep = stop + 1, wider
            batch = order[start:stop]
            for r, logits in zip(batch, self._last_logits([rows[r] for r in batch], keep)):
                for i in asks[r]:
                    if n := tails[i]:
                        logprobs = torch.log_softmax(logits[keep - n :].float(), dim=-1)
                        picked = logprobs.gather(1, torch.tensor(sequences[i][-n:], device=logprobs.device)[:, None])
                        ranks = (logprobs >= picked).sum(dim=1)
                        scores[i] = list(zip(picked[:, 0].tolist(), ranks.tolist()))
            start = stop
        return scores

    def _last_logits(self, rows: list[list[int]], keep: int) -> torch.Tensor:
        """[rows, keep, vocab]: the logits at each row's last `keep` positions (left-padded batch)."""
        width = max(len(r) for r in rows)
        ids = torch.tensor([[self.pad_id] * (width - len(r)) + r for r in rows], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.model.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        with torch.no_grad():
            return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits

    def prompt_logprobs(self, prompts: list[str]) -> list[list[float]]:
        sequences = [list(self.tokenizer(prompt)["input_ids"]) for prompt in prompts]
        return [[logprob for logprob, _ in scores] for scores in self.token_logprobs(sequences)]

    def score_replies(self, replies: list) -> list[list[float]]:
        from hala.engines.replies import reply_token_ids

        cut = [reply_token_ids(self.tokenizer, reply, self.template) for reply in replies]
        scores = self.tail_logprobs([ids for ids, _ in cut], [n_reply for _, n_reply in cut])
        return [[logprob for logprob, _ in s] for s in scores]

    def next_token_logprobs(self, sequences: list[list[int]]) -> list[torch.Tensor]:
        """Per token-id sequence, the [positions, vocab] log-probabilities of each next token
        (teacher forced), on the CPU."""
        results = []
        with torch.no_grad():
            for ids in sequences:
                logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0]
                results.append(torch.log_softmax(logits.float(), dim=-1).cpu())
        return results

    def close(self) -> None:
        self.model = None
        gc.collect()


class _FrequencyPenalty:
    """OpenAI's and vLLM's frequency penalty (transformers has only the prompt-counting
    `repetition_penalty`): each token's logit minus `penalty` times its count in the answer so far."""

    def __init__(self, penalty: float, prompt_width: int):
        self.penalty, self.prompt_width = penalty, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        answer = input_ids[:, self.prompt_width :]
        counts = torch.zeros_like(scores).scatter_add_(1, answer, torch.ones_like(answer, dtype=scores.dtype))
        return scores - self.penalty * counts
