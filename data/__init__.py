"""Tokenizer and tasks: `from data import get_task, encode, decode`."""
from data.task import Task
from data.tasks import TASKS, get_task
from data.tokenizer import (BOS, EOS, PAD, SEP, LEFT, RIGHT, VALENCE, vocab_size, encode, decode,
                            decode_answer, valence_token)
