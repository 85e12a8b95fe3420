import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Broker, startBroker } from "../kbs/broker.ts";
import { sh } from "../lib/proc.ts";
import { defineScenario } from "../lib/scenario.ts";
import { PLAIN_CMDLINE, volumeDev, volumeGuest } from "./volume-lib/guest.ts";

// A KBS-keyed data volume opens after boot: cryptpilot-volumes.service (after network-online)
// attests to the test key broker on the host (sample evidence) and opens the volume with the
// released resource. The volume is initialised on the host beforehand with the same key bytes
// (`volume init` on the raw disk file: luksFormat needs no device-mapper), as an image builder
// would; no makefs, since making a filesystem needs the volume open.

const KEY = "volume-kbs-key-0123456789abcdef";
const RESOURCE = "default/key/kbsdata";

const CHECK = `#!/bin/bash
echo "service=$(systemctl show -p Result --value cryptpilot-volumes.service)"
/usr/bin/cryptpilot-fde volume show | awk 'NR > 1 && NF == 0 { exit } NR > 1 { print "status-" $1 "=" $4 }'
echo "kbsdata-device=$(cryptsetup status kbsdata | awk '$1 == "device:" { print $2 }')"
echo "kbsdata-type=$(cryptsetup status kbsdata | awk '$1 == "type:" { print $2 }')"
echo "journal=$(journalctl -b -u cryptpilot-volumes.service --no-pager -o cat | grep -m1 'kbsdata:' | tr '\\n' ' ')"
`;

async function freePort(): Promise<number> {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

export default defineScenario({
  description:
    "a kbs-keyed data volume (initialised on the host) is opened by the boot service after network-online",
  timeoutSec: 1800,
  async run(ctx) {
    const port = await freePort();
    const volume = (encrypt: string, dev: string) =>
      `volume = "kbsdata"\ndev = "${dev}"\nauto_open = true\n\n${encrypt}`;
    const guest = await volumeGuest(ctx, {
      volumes: {
        "kbsdata.toml": volume(
          `[encrypt.kbs]\nkbs_url = "http://10.0.2.2:${port}"\nkey_uri = "kbs:///${RESOURCE}"\ntee = "sample"\n`,
          volumeDev("kbsdata"),
        ),
      },
      disks: { kbsdata: 64 },
      check: CHECK,
      network: true,
    });

    // Host-side init with an exec provider printing the same bytes the broker will release.
    const cfg = mkdtempSync(join(ctx.outDir, "host-config-"));
    mkdirSync(join(cfg, "volumes"));
    writeFileSync(
      join(cfg, "volumes", "kbsdata.toml"),
      volume(`[encrypt.exec]\ncommand = "printf"\nargs = ["%s", "${KEY}"]\n`, guest.volumeDisks.kbsdata!),
    );
    await sh([ctx.agent, "-c", cfg, "volume", "init", "kbsdata"]);
    rmSync(cfg, { recursive: true, force: true });

    let broker: Broker | undefined;
    try {
      broker = await startBroker({ port, resources: { [RESOURCE]: new TextEncoder().encode(KEY) } });
      const b = await ctx.boot(guest.disk, {
        label: "kbs-volume",
        cmdline: PLAIN_CMDLINE,
        extraQemuArgs: guest.qemuArgs,
        network: true,
        timeoutSec: 900,
      });
      ctx.expectReported(b);
      const get = (key: string) => b.markers.get(`check:${key}`) ?? "";
      ctx.check(
        get("status-kbsdata") === "Opened",
        `kbsdata is ${get("status-kbsdata")}: ${get("journal")}`,
        b,
      );
      ctx.check(get("service") === "success", `the service result is ${get("service")}`, b);
      ctx.check(
        get("kbsdata-type") === "LUKS2",
        `kbsdata is not a LUKS2 mapping (${get("kbsdata-type")})`,
        b,
      );
      ctx.check(
        broker.stats.attestations === 1 && broker.stats.resource === 1,
        `one attestation and one resource request expected, the broker saw ${JSON.stringify(broker.stats)}`,
        b,
      );
    } finally {
      await broker?.stop();
    }
  },
});
