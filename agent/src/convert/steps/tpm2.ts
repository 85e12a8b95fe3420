/** --tpm2-enroll: seal a new rootfs key first (to fail before the long work), enroll it last. */
import { log } from "../../log.ts";
import { defineStep, needOption } from "../context.ts";

export const sealTpm2Key = defineStep("sealTpm2Key", "sealing a new rootfs key to the TPM", {
  device: (c) => c.opts.tpm2Enroll?.tcti,
  sets: ["tpm2Key"],
  async run(c, io) {
    const { tcti, policy } = needOption(c.opts.tpm2Enroll, "sealTpm2Key", "--tpm2-enroll");
    const { sealNewKey } = await import("../../tpm/enroll.ts");
    const fresh = await sealNewKey(tcti, policy);
    io.set("tpm2Key", fresh);
    c.cleanup.push("TPM-sealed key", async () => fresh.key.fill(0));
    log.info(
      `  sealed to ${tcti} under PCRs ${policy.bank}:${fresh.sealed.pcrs.join(",")}${policy.pin === undefined ? "" : " and a PIN"} at their current values: the converted disk unlocks only while they are the same at its boot`,
    );
  },
});

export const enrollTpm2Key = defineStep(
  "enrollTpm2Key",
  "adding the TPM-sealed key to the rootfs LUKS2 header (keyslot and token)",
  {
    device: (c) => c.results.peek("rootfsLv")?.file,
    needs: ["rootfsLv", "tpm2Key"],
    async run(c, io) {
      const { addSealedKeyslot } = await import("../../tpm/enroll.ts");
      const key = needOption(c.opts.rootfsKey, "enrollTpm2Key", "a rootfs key");
      const { keyslot, token } = await addSealedKeyslot(io.need("rootfsLv").file, key, io.need("tpm2Key"));
      log.info(
        `  keyslot ${keyslot} (token ${token}); the given rootfs key stays in its keyslot for recovery`,
      );
    },
  },
);
