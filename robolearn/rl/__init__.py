"""RL fine-tuning: PPO and DPPO from pretrained policies in the batched sim."""
