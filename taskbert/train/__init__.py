"""Training: the loop (:mod:`.loop`), the optimizer, schedule, precision and device
(:mod:`.optim`), checkpoints and exact resume (:mod:`.checkpoint`) and several processes
under torchrun (:mod:`.distributed`)."""
