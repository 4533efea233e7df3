r"""Wu et al. 2018's instance memory: one slot per training example, written in place after each step,

    v_i <- normalize(m v_i + (1 - m) f_i)          (m = ``negatives.instance_momentum``)

an anchor's own slot is its positive, and its negatives are ``negatives.subsample`` random slots (0: every
other slot); nothing else of the batch."""


from experiments.tasks.sources import Bank, MemberField, Source, register
from jaxneg import samplers

register(Source(
    name="instance", task="views", rank=2, summary="one memory slot per training example (Wu et al. 2018)",
    # (count -1: every other slot, the training set's size, which the config does not hold)
    uses=lambda c: bool(c.negatives.instance), count=lambda c: c.negatives.subsample or -1,
    config={"negatives.instance": False, "negatives.instance_momentum": 0.5, "negatives.proximal": 0.0,
            "negatives.subsample": 0},
    members=(MemberField("negatives.instance_momentum", "instance_momentum"),
             MemberField("negatives.proximal", "proximal")),
    bank=Bank("instance",
              init=lambda c, num_train, dim, key: samplers.instance_init(num_train, dim, key=key),
              push=lambda bank, p, hp: samplers.instance_update(bank, p.ids, p.values, momentum=hp.instance_momentum,
                                                                step=p.step),
              valid=lambda bank, step, hp: bank.mask, size=lambda bank, hp, config: bank.keys.shape[0]),
    bank_only=lambda c: True,
    reports=("bank_fill", "bank_age", "bank_drift")))
