"""agnews' Hydra configs. In a wheel this folder is the package `agnews.conf` (see pyproject.toml), which
`python -m agnews.run` finds with `pkg://agnews.conf`; a checkout uses the folder itself."""
