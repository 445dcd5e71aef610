"""Tasks and their losses: ``nn.Module``s mapping a batch to named losses (supervised, acclimation, distillation)."""
