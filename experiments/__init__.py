"""The experiment layer: configs, the training loop, sweeps and paper tables, on top of ``jaxneg``.

Reading order, from the bottom up (a module imports only the modules above it in this list, and its own
package's; the command lines, ``python -m experiments.train`` and ``python -m experiments.sweep``, are each
package's ``__main__``, which calls ``cli``):

==============================  ==============================================================
``checks``                      the rules config checks share (positive integers, choices, keywords)
``tasks/``                      what a run trains on, one registered ``Task`` per ``config.task``:
                                ``common`` (the record, the setup, models, the loss call, member
                                fields), ``views`` (SimCLR views, centring, MoCo), its ``negatives``
                                (subsampled, memory bank, queue, instance memory) and its
                                ``view_eval`` (kNN, probe, view-pair metrics), ``pairs`` (queries and
                                documents with sampled or mined negatives)
``config_lib``                  the run config's schema (the loop's fields and every task's own),
                                validation, the dotted-field setter and the ``--config`` parser
``stopping``                    SIGINT / SIGTERM as a clean stop (exit 130 / 143) and the lock
                                that refuses a second launch into a directory in use
``checkpoints``                 orbax checkpoints verified by manifests (damaged ones set aside)
``train/``                      the loop: ``members`` (the member table, ``HParams``, the step's
                                guarded config), ``step`` (optimiser, the compiled step), ``setup``
                                (data, models, evaluation, baselines), ``outputs`` (writer, time
                                account, ``result.json``), ``passes`` (a pass of members through the
                                step), ``loop`` (``train``, ``train_group``)
``spec``                        what a sweep is: ``Sweep``, ``Part``, ``Analysis`` and their
                                expansion into validated points (configs import this)
``sweep/``                      running a sweep: ``backends`` (programs, local and SLURM, progress),
                                ``report`` (results, baselines, collapse flags, ``report.md``),
                                ``launcher`` (record, lock, data, the run and the summary)
``cli``                         the two command lines: flags, overrides, signals, exit statuses
``configs/``                    ``get_config(arg)`` run configs and ``quickstart.py``, the main sweep
``reproduce/``                  one command per paper table (small analogs and full-scale grids)
==============================  ==============================================================

Files on disk: :mod:`jaxneg.rundir` describes a run directory and a sweep directory.
"""
