"""The Celery side of appendq: beat ticks every DRAIN_INTERVAL, one worker drains.

Celery carries ticks, never records: a tick holds no state, and ticks that piled up while the
workers were down expire instead of bursting.
"""
