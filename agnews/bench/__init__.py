"""Measuring agnews rather than using it: the speed comparison with the course notebook (speed, against its
re-creation in notebook), the GPU check (gpu_check), and the made-up GloVe file both can load
(synthetic_glove), run by `python -m agnews.bench`; and how a sweep uses one machine, launchers and thread
counts side by side (sweeps: `python -m agnews.bench.sweeps`)."""
