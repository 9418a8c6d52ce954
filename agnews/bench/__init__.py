"""Measuring agnews rather than using it: the speed comparison with the course notebook (speed, against its
re-creation in notebook), the GPU check (gpu_check), and the made-up GloVe file both can load
(synthetic_glove). `python -m agnews.bench` runs them."""
