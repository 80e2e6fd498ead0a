"""``scaler_bench``: scaler beside ProcessPoolExecutor and its peers, side by side in one run.

How the parts fit::

    scaler.cli.bench (flags) ──▶ runner.run_table: rounds × peers × workloads ──▶ results.Report
                                   │                                               ├─▶ render(): the table
                                   ├─ peers: Peer (importable? start-up) ──▶ Session (submit, wait, cancel, graph)
                                   ├─ workloads: what each row measures, on any Session
                                   │    └─ memory: a fresh process per measurement (python -m scaler.bench.memory)
                                   └─ tasks: the functions the workers run
                                 scaling: --scale-workers / --scale-tasks ──▶ plot (matplotlib, lazily)

Every process a run starts is stopped before it returns (``processes``). ``benchmarks/`` keeps
the deeper scripts, which use these parts too.
"""
