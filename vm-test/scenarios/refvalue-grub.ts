import { eventLogScenario } from "../../agent/test/refvalue/eventlog-check.ts";
import { defineScenario } from "../lib/scenario.ts";

// show-reference-value's predictions for a converted GRUB disk appear in the TCG event log that
// OVMF, shim and GRUB wrote while booting it with a swtpm TPM (issue 5).
export default defineScenario({
  description: "GRUB disk under OVMF + swtpm: show-reference-value's values are in the guest's TPM event log",
  timeoutSec: 2400,
  run: (ctx) => eventLogScenario(ctx, "grub"),
});
