"""`hala judge`: filtering of parallel pairs by a judge's verdict and score, batched, cached and calibrated."""

from hala.judge.calibration import calibrate
from hala.judge.prompt import JUDGE_PROMPT, PAPER_JUDGE_MODEL, parse_verdict
from hala.judge.stage import JudgeConfig, judge

__all__ = ["JUDGE_PROMPT", "PAPER_JUDGE_MODEL", "JudgeConfig", "calibrate", "judge", "parse_verdict"]
