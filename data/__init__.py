"""Tokenizer and tasks: `from data import get_task, encode, decode`."""
from data.tasks import TASKS, Task, get_task
from data.tokenizer import (BOS, EOS, PAD, SEP, LEFT, RIGHT, VALENCE, vocab_size, encode, decode,
                            decode_answer, valence_token)
