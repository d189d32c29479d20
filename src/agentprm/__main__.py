"""`python -m agentprm` is the `agentprm` command; launchers that take a module need it:
`accelerate launch --num_processes 2 -m agentprm train-prm ...`, `torchrun --nproc_per_node 2 -m agentprm ...`."""

from agentprm.cli import main

if __name__ == "__main__":
    main()
