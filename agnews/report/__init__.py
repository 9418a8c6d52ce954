"""The sweep report, `python -m agnews.report`: summary.csv, the accuracy statistics, findings in words
and plots, from what each run recorded about itself. No torch anywhere in this package."""
