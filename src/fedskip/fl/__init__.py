"""Only what touches Flower: the ClientApp and ServerApp, the server's run and round loop, the
messages, wire compression, SecAgg+, a node's DP-SGD state and a site's kept state, progress,
stop and the worker log; the strategy is :mod:`fedskip.fl.strategy`. The work itself is done by
the Flower-free :mod:`fedskip.federation` and written through :mod:`fedskip.records`."""
