import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withSwtpm } from "../../agent/testkit/swtpm.ts";
import { AFFINITY_COOKIE, startBroker } from "../kbs/broker.ts";
import { makeTestPki } from "../kbs/tls.ts";
import { freePort } from "../lib/net.ts";
import { defineScenario } from "../lib/scenario.ts";
import { startNtpServer } from "../ntp/server.ts";
import { kbsFdeToml } from "./kbs-http.ts";

// rootfs and delta keys from the test key broker over HTTPS, trust pinned with kbs_root_cert to
// the broker's own CA, with TPM evidence: the guest's (swtpm) TPM quotes the runtime-data digest
// in the initrd and the broker verifies the quotes with tpm2_checkquote before releasing keys.
// The same boot meets what real deployments do to a guest (issue #15): its clock starts in 2020
// (-rtc base=, so the broker's certificate is not yet valid until the stage syncs the clock by
// SNTP from global.toml's ntp_servers, a test server on the host), the broker answers the first
// two /attest with trustee's 401 for a transient verifier failure (the handshake restarts), and
// a load balancer in front of it routes by its own affinity cookie (every cookie is sent back).

//
// kbs-https-trixie boots the same on Debian 13 (kernel 6.12, where configfs-tsm and the TDX/SEV
// guest drivers are modules) and checks what the stage does about them on a guest without a TEE:
// the booted system shows tsm (configfs-tsm) loaded and /sys/kernel/config/tsm/report present (only
// the stage loads them: they have no device to autoload on), tdx_guest/sev_guest not (ENODEV on
// this CPU); and a second boot of the disk whose initrd leaves `tee` to detection, without a TPM,
// stops with the "no TEE found" paragraph naming what it looked for, instead of any evidence.

/** Printed by cptest-report in the booted guest (checks.d): the TEE guest modules' state. */
const TEE_MODULE_CHECK = `#!/bin/bash
for m in tsm tdx_guest sev_guest configfs; do
  if [ -d /sys/module/$m ]; then echo "module-$m=loaded"; else echo "module-$m=absent"; fi
done
if [ -d /sys/kernel/config/tsm/report ]; then echo "tsm-report=present"; else echo "tsm-report=absent"; fi
`;

const ROOTFS_KEY = "kbs-vm-rootfs-key-tls";

export default defineScenario({
  description:
    "kbs over HTTPS (kbs_root_cert pins the broker's CA) with TPM evidence checked by tpm2_checkquote; the guest clock starts in 2020 and is set by SNTP before the key fetch; two transient 401s at /attest restart the handshake; a load balancer's affinity cookie is sent back (on Debian 13 also: the stage loads configfs-tsm; without a TPM the TEE detection stops the boot naming what it looked for)",
  skip: () =>
    Bun.which("swtpm") && Bun.which("tpm2_checkquote") ? undefined : "swtpm or tpm2-tools is not installed",
  timeoutSec: 1200,
  async run(ctx) {
    const pki = makeTestPki(mkdtempSync(join(tmpdir(), "kbs-pki-")));
    const port = await freePort();
    const ntp = await startNtpServer();
    const pin = `kbs_root_cert = """\n${pki.caPem}"""\n`;
    const fde = kbsFdeToml(`https://10.0.2.2:${port}`, pin).replaceAll('tee = "sample"', 'tee = "tpm"');
    const global = `[boot]\nntp_servers = ["10.0.2.2:${ntp.port}"]\n`;
    const trixie = ctx.base.suite === "trixie";
    const source = trixie
      ? await ctx.sourceDisk({ files: { "/etc/cptest/checks.d/tee-modules.sh": TEE_MODULE_CHECK } })
      : undefined;
    const disk = await ctx.convert({ fde, global, rootfsKey: ROOTFS_KEY, source });
    const broker = await startBroker({
      faults: { transient401Attest: 2, affinityCookie: AFFINITY_COOKIE },
      port,
      tls: { cert: pki.certPem, key: pki.keyPem },
      allowTees: ["tpm"],
      resources: {
        "default/key/rootfs": new TextEncoder().encode(ROOTFS_KEY),
        "default/key/delta": crypto.getRandomValues(new Uint8Array(32)),
      },
    });
    try {
      const boot = await withSwtpm(join(ctx.outDir, "tpm-state"), join(ctx.outDir, "swtpm.sock"), (tpm) =>
        ctx.boot(disk, {
          label: "kbs-https-tpm",
          quick: true,
          network: true,
          extraQemuArgs: [...tpm.qemuArgs, "-rtc", "base=2020-01-01T00:00:00"],
        }),
      );
      ctx.expectReported(boot);
      ctx.check(
        ntp.requests > 0 && /set the clock from 10\.0\.2\.2:\d+ to 20\d\d-/.test(boot.serial),
        `the stage did not set the clock from the host's SNTP server (${ntp.requests} requests)`,
        boot,
      );
      ctx.check(
        /attested to https:\/\/10\.0\.2\.2:\d+ as tpm/.test(boot.serial),
        "no TPM attestation on the console",
        boot,
      );
      // Three handshakes (two refused with 401, then attested); both keys in that one session,
      // which the affinity cookie kept on one replica.
      ctx.check(
        broker.stats.attestations === 1 && broker.stats.attest === 3 && broker.stats.resource === 2,
        `three /attest (two transient 401s), one attestation and two resource requests expected, broker saw ${JSON.stringify(broker.stats)}`,
        boot,
      );
      if (trixie) {
        const expect = {
          "module-tsm": "loaded",
          "module-configfs": "loaded",
          "tsm-report": "present",
          "module-tdx_guest": "absent",
          "module-sev_guest": "absent",
        };
        for (const [key, value] of Object.entries(expect)) {
          const got = boot.markers.get(`check:${key}`);
          ctx.check(got === value, `${key}: expected ${value}, the guest reports ${got}`, boot);
        }
        // The same disk, its initrd's fde.toml leaving the TEE to detection, no TPM attached.
        const detect = fde.replaceAll('tee = "tpm"\n', "");
        const before = broker.stats.attest ?? 0;
        const none = await ctx.boot(disk, {
          label: "no-tee",
          quick: true,
          network: true,
          initrdFiles: { "/etc/cryptpilot/fde.toml": detect },
        });
        ctx.expectStopped(
          none,
          /no TEE found: no TDX or SEV-SNP sign \(CPU flag tdx_guest, [^)]*configfs-tsm provider under \/sys\/kernel\/config\/tsm[^)]*\) and no \/dev\/tpmrm0/,
          "the TEE detection's 'no TEE found' paragraph",
        );
        ctx.check(
          (broker.stats.attest ?? 0) === before,
          `the guest without a TEE must not attest, the broker saw ${(broker.stats.attest ?? 0) - before} /attest`,
          none,
        );
      }
    } finally {
      await broker.stop();
      await ntp.stop();
    }
  },
});
