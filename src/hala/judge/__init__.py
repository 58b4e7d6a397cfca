"""`hala judge`: LLM-as-judge filtering of parallel pairs (ACCEPT/REJECT), batched and cached."""

from hala.judge.prompt import JUDGE_PROMPT, PAPER_JUDGE_MODEL, parse_verdict
from hala.judge.stage import JudgeConfig, judge

__all__ = ["JUDGE_PROMPT", "PAPER_JUDGE_MODEL", "JudgeConfig", "judge", "parse_verdict"]
