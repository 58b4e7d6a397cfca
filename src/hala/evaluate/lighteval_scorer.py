"""lighteval's log-likelihood requests, scored by a hala engine (`hala eval bench --backend vllm`).

lighteval's own vLLM model accepts only vllm<0.10.2 (hala pins 0.33), so hala hands lighteval's
pipeline a `LightevalModel` of its own. It builds the token sequences lighteval's transformers
backend builds (the context and each choice encoded apart, cut from the left to the model's
context length), asks the engine for the log-probabilities and ranks of each choice's tokens (`Engine.tail_logprobs`,
the engine API: nothing here knows which library serves the model), and answers as lighteval's
vLLM model does: the summed log-probability of each choice's tokens and whether each of them was
the model's first choice. Both backends thus score the same tokens, so a CPU run and a GPU run of
a model agree (`tests/test_evaluate_bench.py`).
"""

from __future__ import annotations

from hala.engines.base import EngineConfig


def engine_scorer(engine_cfg: EngineConfig, chat_template: bool | None):
    """A lighteval model whose log-likelihood requests the engine of `engine_cfg` scores;
    `chat_template` as lighteval's `override_chat_template` (None: the tokenizer's, if any)."""
    from lighteval.models.abstract_model import LightevalModel, ModelConfig
    from lighteval.models.model_output import ModelResponse
    from lighteval.models.utils import uses_chat_template
    from lighteval.tasks.prompt_manager import PromptManager
    from lighteval.tasks.requests import SamplingMethod
    from lighteval.utils.cache_management import SampleCache, cached
    from transformers import AutoTokenizer

    from hala.engines import get_engine

    class EngineScorer(LightevalModel):
        chunk = 1024  # sequences per engine call: bounds the memory their prompt log-probs take

        def __init__(self):
            self.config = ModelConfig(model_name=engine_cfg.model)
            self._tokenizer = AutoTokenizer.from_pretrained(engine_cfg.model)
            self.engine = get_engine(engine_cfg)
            self._max_length = self.engine.context_length
            self.use_chat_template = uses_chat_template(tokenizer=self._tokenizer, override_chat_template=chat_template)
            self.prompt_manager = PromptManager(self.use_chat_template, self._tokenizer, None)
            self._cache = SampleCache(self.config)

        tokenizer = property(lambda self: self._tokenizer)
        add_special_tokens = property(lambda self: True)
        max_length = property(lambda self: self._max_length)

        def cleanup(self):
            self.engine.close()

        def greedy_until(self, docs):
            raise NotImplementedError("the OALL v2 tasks are log-likelihood only")

        def loglikelihood_rolling(self, docs):
            raise NotImplementedError("the OALL v2 tasks are log-likelihood only")

        @cached(SamplingMethod.LOGPROBS)
        def loglikelihood(self, docs):
            responses = []
            for start in range(0, len(docs), self.chunk):
                batch = []
                for doc in docs[start : start + self.chunk]:
                    context = self.prompt_manager.prepare_prompt(doc)
                    contexts, continuations = self.tok_encode_pair(context, doc.choices, pairwise=True)
                    batch.append((context, contexts, continuations))
                sequences = [
                    (ctx + cont)[-self.max_length :] for _, ctxs, conts in batch for ctx, cont in zip(ctxs, conts)
                ]
                tails = [len(cont) for _, _, conts in batch for cont in conts]
                scored = iter(self.engine.tail_logprobs(sequences, tails))
                for context, ctxs, conts in batch:
                    logprobs, greedy = [], []
                    for cont in conts:
                        picked = next(scored)
                        logprobs.append(sum(logprob for logprob, _ in picked))
                        greedy.append(all(rank == 1 for _, rank in picked))
                    responses.append(
                        ModelResponse(
                            input=context,
                            input_tokens=ctxs,
                            output_tokens=conts,
                            logprobs=logprobs,
                            argmax_logits_eq_gold=greedy,
                        )
                    )
            return responses

    return EngineScorer()
