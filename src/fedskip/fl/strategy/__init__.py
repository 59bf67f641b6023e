"""The fedskip Flower strategy: the layer-skipping core (:mod:`~fedskip.fl.strategy.core`), the
base of its wrappers (:mod:`~fedskip.fl.strategy.wrapper`), the DP wrappers
(:mod:`~fedskip.fl.strategy.sample_dp`, :mod:`~fedskip.fl.strategy.client_dp`,
:mod:`~fedskip.fl.strategy.privacy`) and the one builder (:mod:`~fedskip.fl.strategy.builder`).
"""
