import { eventLogScenario } from "../lib/eventlog.ts";
import { defineScenario } from "../lib/scenario.ts";

// show-reference-value's prediction for a converted UKI disk appears in the TCG event log that
// OVMF wrote while booting it with a swtpm TPM (issue 5).
export default defineScenario({
  description: "UKI disk under OVMF + swtpm: show-reference-value's value is in the guest's TPM event log",
  timeoutSec: 2400,
  run: (ctx) => eventLogScenario(ctx, "uki"),
});
