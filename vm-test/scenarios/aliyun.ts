import { startGuestWorld } from "../aliyun/guest.ts";
import { defineScenario } from "../lib/scenario.ts";

// Alibaba Cloud providers at boot, against the test servers on the host (10.0.2.2 from the guest,
// set through the providers' endpoint options; no DNS in the initrd):
// (1) the rootfs key through oidc (token command -> STS AssumeRoleWithOIDC -> KMS gateway), the
// delta key from the KMS instance with a client key (pinned TLS, RSA request signature);
// (2) the KMS instance answers an error (signature rejected): the boot stops at once, naming the
// endpoint and the service's error code.

export default defineScenario({
  description: "aliyun: rootfs key via oidc, delta key via kms client key; a KMS error answer stops the boot",
  timeoutSec: 2400,
  async run(ctx) {
    // The token in fde.toml must stay valid for the whole scenario.
    const { world, fde, rootfsKey } = await startGuestWorld("10.0.2.2", 4 * 3600);
    try {
      const disk = await ctx.convert({ fde, rootfsKey });

      const ok = await ctx.boot(disk, { label: "aliyun-up", network: true });
      ctx.expectReported(ok);
      const served = world.requests.filter((r) => r.status === 200).map((r) => `${r.service} ${r.action}`);
      for (const call of ["sts AssumeRoleWithOIDC", "kms GetSecretValue", "instance GetSecretValue"]) {
        ctx.check(
          served.includes(call),
          `the servers never answered ${call} (saw: ${served.join(", ")})`,
          ok,
        );
      }

      world.setFault("instance", { mode: "bad-signature" });
      const refused = await ctx.boot(disk, { label: "kms-refuses", network: true });
      ctx.expectStopped(
        refused,
        /cannot read secret "vm-delta" for volume delta: GetSecretValue at https:\/\/10\.0\.2\.2:\d+\/: HTTP 401 SignatureNotMatch/,
        "the KMS instance's SignatureNotMatch answer",
      );
      const refusals = world.requests.filter((r) => r.service === "instance" && r.status === 401);
      ctx.check(
        refusals.length === 1,
        `a refused signature must not be retried (${refusals.length} requests)`,
        refused,
      );
    } finally {
      world.stop();
    }
  },
});
