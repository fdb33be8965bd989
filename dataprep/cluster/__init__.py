"""Scale-out: the same stages on a Ray cluster, deciding every row as one machine does.

* :mod:`dataprep.cluster.job` says what to run (a recipe's plan or a tokenize job, in one shape).
* :mod:`dataprep.cluster.decide` holds the decisions that need more than one row (exact and near duplicates, split
  ranks): pure functions of a row's stable key, its content and the seed, run inside Ray Data groupbys.
* :mod:`dataprep.cluster.work` holds the per-shard work (read, normalize, filter, split, tokenize, write), as
  callable classes that build their stage objects once per worker.
* :mod:`dataprep.cluster.engine` is the only module that imports ``ray``; it wires the pieces into Ray Data.

Nothing here is imported on a single machine: ``dataprep run`` and ``dataprep tokenize`` load this package only
for ``--engine ray``.
"""
