"""
Assignment 6, the GAN losses (paper §5.2, Algorithm 1 lines 4-5, lines 282-294):
losses.py:gan_discriminator_loss, losses.py:gan_generator_loss_saturating,
losses.py:gan_generator_loss_nonsaturating.

All three take D's score logits (D(y) = sigmoid(score)). Graded by values worked by hand, by
their gradients (the saturating loss is weak exactly where D rejects a fake), and by a
discriminator that must learn to tell real from fake.

    $ python -m pytest assignments/tests/test_a6_gan.py -q
"""
import math

import torch

from checks import close, descend
from losses import (gan_discriminator_loss, gan_generator_loss_nonsaturating,
                    gan_generator_loss_saturating)

LN2, LN3 = math.log(2), math.log(3)


def test_discriminator_loss_by_hand():
    # D(y) = 1/2 and 3/4; D(G(x)) = 1/2 and 1/4:
    # -[ln 1/2 + ln 1/2] = 2 ln 2;  -[ln 3/4 + ln 3/4] = 2 ln(4/3);  mean = ln 2 + ln(4/3)
    close(gan_discriminator_loss(torch.tensor([0.0, LN3]), torch.tensor([0.0, -LN3])),
          math.log(8 / 3))
    close(gan_discriminator_loss(torch.tensor([30.0]), torch.tensor([-30.0])), 0.0)  # perfect D
    close(gan_discriminator_loss(torch.tensor([-LN3]), torch.tensor([LN3])), 2 * math.log(4))
    close(gan_discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])), 400.0)  # finite


def test_discriminator_gradient_raises_real_scores_and_lowers_fake_ones():
    # d/ds_real = -(1 - D(y)) / b, d/ds_fake = D(G(x)) / b; at s = 0 with b = 2: -1/4 and 1/4
    real, fake = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    gan_discriminator_loss(real, fake).backward()
    close(real.grad, [-0.25, -0.25])
    close(fake.grad, [0.25, 0.25])


def test_generator_losses_by_hand():
    s_fake = torch.tensor([0.0, -LN3])                                 # D(G(x)) = 1/2, 1/4
    # saturating: G descends mean ln(1 - D) = (ln 1/2 + ln 3/4) / 2
    close(gan_generator_loss_saturating(s_fake), (math.log(0.5) + math.log(0.75)) / 2)
    # non-saturating: G descends -mean ln D = (ln 2 + ln 4) / 2 = 1.5 ln 2
    close(gan_generator_loss_nonsaturating(s_fake), 1.5 * LN2)


def test_the_saturating_loss_is_weak_exactly_where_d_rejects_the_fake():
    # d/ds: saturating -D, non-saturating -(1 - D); at D = 1/10 and 1/2, over a batch of 2
    s = torch.tensor([-math.log(9.0), 0.0], requires_grad=True)
    gan_generator_loss_saturating(s).backward()
    close(s.grad, [-0.1 / 2, -0.5 / 2])
    s.grad = None
    gan_generator_loss_nonsaturating(s).backward()
    close(s.grad, [-0.9 / 2, -0.5 / 2])


def test_a_discriminator_trained_on_its_loss_tells_real_from_fake():
    # real samples near +1, fakes near -1; a linear D trained on gan_discriminator_loss alone
    g = torch.Generator().manual_seed(0)
    real, fake = 1 + 0.3 * torch.randn(32, generator=g), -1 + 0.3 * torch.randn(32, generator=g)
    w, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    for _ in range(50):
        gan_discriminator_loss(w * real + b, w * fake + b).backward()
        descend([w, b], lr=1.0)
    assert (w * real + b > 0).all() and (w * fake + b < 0).all()
    # ... and the generator's losses, on those fakes, now ask to move them toward the reals
    x = fake.clone().requires_grad_(True)
    gan_generator_loss_nonsaturating(w.detach() * x + b.detach()).backward()
    assert (x.grad < 0).all()                                           # descent raises x
