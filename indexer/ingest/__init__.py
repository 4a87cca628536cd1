"""Events in: webhook parsing, routing to jobs, the journal, the queue, the scheduler."""
