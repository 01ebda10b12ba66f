"""`ocr-gateway run`: start the gateway's processes on one machine and keep them alive.

The API (`serve`), the dispatcher (`dispatch`) and the OCR workers (`worker`) are separate
commands; in production each runs under whatever supervises services there (docker-compose,
systemd, Kubernetes). `make run` needs the same on a developer's machine, with the guarantees
the gateway promises: a crashed process is started again; Ctrl-C stops everything, in order, and
a publish in flight is settled first; nothing outlives the launcher.

A Procfile runner such as honcho gets close, but it does not start again a process that exits:
it stops all the others instead (a crashed dispatcher would end `make run`), and it stops every
process at the same moment rather than the API before the dispatcher before the workers. So
this package is a small launcher of its own:
- `children.py`: how each command is started (its own session, ends with the launcher);
- `lifetime.py`: the kernel's parent-death signal, so a SIGKILLed launcher leaves no orphan;
- `supervisor.py`: the restart delays, the wait for signals and exits, the ordered stop;
- `run.py`: the three commands, their order and their stop grace.
"""
