import { aliyunTables } from "../aliyun/config.ts";
import { makeIssuer } from "../aliyun/issuer.ts";
import { makeMaterial } from "../aliyun/material.ts";
import { AliyunWorld } from "../aliyun/servers.ts";
import { defineScenario } from "../lib/scenario.ts";

// Alibaba Cloud providers at boot, against the test servers on the host (10.0.2.2 from the guest):
// (1) the rootfs key through oidc (token command -> STS AssumeRoleWithOIDC -> KMS gateway), the
// delta key from the KMS instance with a client key (pinned TLS, RSA request signature);
// (2) the KMS instance is down: the boot stops after the bounded retries, naming the endpoint.

const PROVIDER = "acs:ram::1234567890:oidc-provider/VmTestIdp";
const ROLE = "acs:ram::1234567890:role/vm-test-boot";
const ROOTFS_KEY = "aliyun-vm-rootfs-key";

export default defineScenario({
  description: "aliyun: rootfs key via oidc, delta key via kms client key; KMS instance down stops the boot",
  timeoutSec: 2400,
  async run(ctx) {
    const material = makeMaterial();
    const issuer = await makeIssuer("https://oidc.vm-test.example", "cryptpilot-fde-vm-test");
    const deltaKey = crypto.getRandomValues(new Uint8Array(32));
    const world = await AliyunWorld.start({
      material,
      // oidc yields the raw secret; kms base64-decodes it (as upstream cryptpilot).
      secrets: { "vm-rootfs": ROOTFS_KEY, "vm-delta": Buffer.from(deltaKey).toString("base64") },
      oidcProvider: {
        arn: PROVIDER,
        issuer: issuer.issuer,
        clientIds: [issuer.audience],
        jwks: [issuer.jwk],
      },
      roles: { [ROLE]: PROVIDER },
    });
    try {
      const tables = aliyunTables(world, material, "10.0.2.2");
      // The token goes into fde.toml (printf prints it), valid long enough for the whole scenario.
      const token = await issuer.token({ exp: Math.floor(Date.now() / 1000) + 4 * 3600 });
      const fde = [
        "[rootfs]",
        'delta_location = "disk"',
        'delta_backend = "dm-snapshot"',
        "",
        tables.oidc("rootfs", "vm-rootfs", token, { provider: PROVIDER, role: ROLE }),
        "[delta]",
        "integrity = false",
        "",
        tables.kms("delta", "vm-delta"),
      ].join("\n");
      const disk = await ctx.convert({ fde, rootfsKey: ROOTFS_KEY });

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

      world.setFault("instance", { mode: "down" });
      const down = await ctx.boot(disk, { label: "kms-down", network: true });
      ctx.expectStopped(
        down,
        /GetSecretValue at https:\/\/10\.0\.2\.2:\d+\/: cannot connect .*gave up after 5 attempts/,
        "the KMS instance connection failure",
      );
    } finally {
      world.stop();
    }
  },
});
