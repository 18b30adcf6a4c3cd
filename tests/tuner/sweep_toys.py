"""Analytical toy evaluators for the sweep's tests (importable as ``sweep_toys:Name``)."""

import time

from tuner.testing.toys import ToyEvaluator


class AnalyticalToy(ToyEvaluator):
    analytical = True


class SlowAnalyticalToy(ToyEvaluator):
    """Analytical, but 20 ms per config: long enough to interrupt."""

    analytical = True

    def evaluate(self, config):
        time.sleep(0.02)
        return super().evaluate(config)


class BatchToy(AnalyticalToy):
    """With a batch entry point that breaks on x == 7 (then the sweep scores one by one);
    x == y == 7 raises (three configs: one per mode)."""

    calls = 0

    def evaluate_batch(self, configs):
        BatchToy.calls += 1
        if any(c["x"] == 7 for c in configs):
            raise RuntimeError("batch path broke")
        return [self.evaluate(c) for c in configs]

    def evaluate(self, config):
        if config["x"] == 7 and config["y"] == 7:
            raise RuntimeError("bad config")
        return super().evaluate(config)
