"""The experiment layer: configs, the training loop, sweeps and paper tables, on top of ``jaxneg``.

Reading order, from the bottom up (each module imports only the ones above it):

==============================  ==============================================================
``config_lib``                  the run config's schema, validation, the dotted-field setter and
                                the ``--config.<field>=<value>`` parser
``stopping``                    SIGINT / SIGTERM as a clean stop (exit 130 / 143) and the lock
                                that refuses a second launch into a directory in use
``checkpoints``                 orbax checkpoints verified by manifests (damaged ones set aside)
``tasks/``                      what a run trains on: ``views`` (SimCLR views, MoCo key encoder and
                                queue), ``pairs`` (queries and documents with sampled or mined
                                negatives); ``common`` holds the setup, models and the loss call
``train``                       the loop (restore, step, log, checkpoint, evaluate, result) and its
                                command line; configs that differ only in member fields train as
                                members of one compiled program
``sweep``                       a sweep's spec (``Sweep``, ``Part``, ``Analysis``), its expansion and
                                planning into programs, the local and SLURM backends, the analysis
                                (``jaxneg.analysis.write_report``) and its command line
``configs/``                    ``get_config(arg)`` run configs and ``quickstart.py``, the main sweep
``reproduce/``                  one command per paper table (small analogs and full-scale grids)
==============================  ==============================================================

Files on disk: :mod:`jaxneg.rundir` describes a run directory and a sweep directory.
"""
