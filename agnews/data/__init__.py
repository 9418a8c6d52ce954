"""The data pipeline: AG News files (`ag_news`), the tokenizer and vocab (`text`), splits encoded once
and cached (`prepare`), GloVe vectors (`glove`) and batches (`batches`)."""
