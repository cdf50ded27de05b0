"""Training: the mid-training corpus (`corpus.py`), the tiny base model (`pretrain.py`), next-token
prediction (`ntp.py`: NTP mid-training, pretraining and the RA3 M-step) and RA3 (`ra3/`)."""
