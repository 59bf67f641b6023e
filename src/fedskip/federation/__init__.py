"""What a site and the server do each round, without Flower: plan the round's trainable tensors
(:mod:`~fedskip.federation.planning`), a site's train / evaluate / score work
(:mod:`~fedskip.federation.client`), check replies (:mod:`~fedskip.federation.validation`),
merge them (:mod:`~fedskip.federation.aggregation`), and turn a round into its ``metrics.jsonl``
row and the run's ``summary.json`` (:mod:`~fedskip.federation.round_rows`).

Never imports ``flwr``: the Flower adapters in :mod:`fedskip.fl` call this package.
"""
