import { startGuestWorld } from "../aliyun/guest.ts";
import { DnsServer } from "../lib/dns.ts";
import { defineScenario } from "../lib/scenario.ts";

// Alibaba Cloud providers at boot, against the test servers on the host, reached by their real
// host names: <kst-id>.cryptoservice.kms.aliyuncs.com (the instance endpoint's default URL, no
// endpoint option), sts.<region>.aliyuncs.com and kms.<region>.aliyuncs.com. A test DNS server
// resolves them to 10.0.2.2; the guest asks the DHCP-advertised server (QEMU's proxy, pointed at
// the test DNS server), so the initrd's resolv.conf must come from its DHCP lease.
// (1) the rootfs key through oidc (token command -> STS AssumeRoleWithOIDC -> KMS gateway), the
// delta key from the KMS instance with a client key (pinned TLS, RSA request signature);
// (2) the KMS instance answers an error (signature rejected): the boot stops at once, naming the
// endpoint and the service's error code.

export default defineScenario({
  description:
    "aliyun: rootfs key via oidc, delta key via kms client key, endpoints by host name (initrd DNS); a KMS error answer stops the boot",
  timeoutSec: 2400,
  async run(ctx) {
    // The token in fde.toml must stay valid for the whole scenario.
    const { world, fde, rootfsKey, dnsRecords } = await startGuestWorld("10.0.2.2", 4 * 3600, {
      byName: true,
    });
    const dns = await DnsServer.start(dnsRecords);
    try {
      const disk = await ctx.convert({ fde, rootfsKey });

      const ok = await ctx.boot(disk, { label: "aliyun-up", network: true, dnsServer: "127.0.0.1" });
      ctx.expectReported(ok);
      ctx.check(
        /cryptpilot-fde: \/etc\/resolv\.conf: nameserver 10\.0\.2\.3/.test(ok.serial),
        "the initrd did not write resolv.conf from the DHCP lease (DNS 10.0.2.3)",
        ok,
      );
      const asked = new Set(dns.questions.filter((q) => q.type === 1).map((q) => q.name));
      for (const name of Object.keys(dnsRecords)) {
        ctx.check(asked.has(name), `the guest never resolved ${name} (asked: ${[...asked].join(", ")})`, ok);
      }
      const served = world.requests.filter((r) => r.status === 200).map((r) => `${r.service} ${r.action}`);
      for (const call of ["sts AssumeRoleWithOIDC", "kms GetSecretValue", "instance GetSecretValue"]) {
        ctx.check(
          served.includes(call),
          `the servers never answered ${call} (saw: ${served.join(", ")})`,
          ok,
        );
      }

      world.setFault("instance", { mode: "bad-signature" });
      const refused = await ctx.boot(disk, { label: "kms-refuses", network: true, dnsServer: "127.0.0.1" });
      ctx.expectStopped(
        refused,
        /cannot read secret "vm-delta" for volume delta: GetSecretValue at https:\/\/kst-test[0-9a-f]+\.cryptoservice\.kms\.aliyuncs\.com\/: HTTP 401 SignatureNotMatch/,
        "the KMS instance's SignatureNotMatch answer",
      );
      const refusals = world.requests.filter((r) => r.service === "instance" && r.status === 401);
      ctx.check(
        refusals.length === 1,
        `a refused signature must not be retried (${refusals.length} requests)`,
        refused,
      );
    } finally {
      dns.stop();
      world.stop();
    }
  },
});
