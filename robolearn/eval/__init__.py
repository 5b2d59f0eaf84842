"""Evaluation: batched rollouts with receding-horizon chunk execution, metrics with confidence
intervals, ``eval_info.json`` and an optional mp4."""

from robolearn.eval.evaluate import EvalResult, evaluate
from robolearn.eval.runner import ChunkedPolicyRunner, ChunkPolicy

__all__ = ["ChunkPolicy", "ChunkedPolicyRunner", "EvalResult", "evaluate"]
