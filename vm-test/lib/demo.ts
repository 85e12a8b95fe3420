/**
 * `make demo`: convert the Debian test guest with the default layout (dm-snapshot, delta on disk)
 * and KBS-released keys for rootfs and delta, print its reference values, start the test key
 * broker on 127.0.0.1 and boot the image through OVMF + shim + GRUB, showing the console.
 */
import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import { type Broker, startBroker } from "../kbs/broker.ts";
import { baseImage } from "./base.ts";
import { clearConvertCache, createContext } from "./context.ts";
import { freePort } from "./net.ts";
import { shText } from "./proc.ts";

const repo = resolve(import.meta.dir, "..", "..");

function section(title: string): void {
  console.log(`\n==== ${title} ====`);
}

async function main(): Promise<number> {
  section("guest base image (Debian 12)");
  const base = await baseImage(repo);
  console.log(base.disk);
  const ctx = createContext("demo", repo, base);

  const port = await freePort();
  // Keys live only in this process and the broker; the rootfs key reaches convert through a 0600 file.
  const keys = { rootfs: randomBytes(32).toString("hex"), delta: randomBytes(32).toString("hex") };
  const kbs = (name: string) =>
    `kbs_url = "http://10.0.2.2:${port}"\nkey_uri = "kbs:///default/key/${name}"\ntee = "sample"\n`;
  const fde = `# Defaults: delta_location = "disk", delta_backend = "dm-snapshot".
[rootfs]

[rootfs.encrypt.kbs]
${kbs("rootfs")}
[delta]

[delta.encrypt.kbs]
${kbs("delta")}`;
  section("fde.toml");
  console.log(fde);

  section("convert (GRUB layout)");
  const disk = await ctx.convert({ fde, rootfsKey: keys.rootfs });
  console.log(disk);

  section("reference values (show-reference-value --disk)");
  console.log(
    await shText([ctx.agent, "show-reference-value", "--disk", disk]).catch(
      (e) => `not available: ${(e as Error).message}`,
    ),
  );

  section(`boot through OVMF + shim + GRUB, keys from the test KBS at 127.0.0.1:${port}`);
  let broker: Broker | undefined;
  const tail = Bun.spawn(["tail", "-F", "-n", "+1", join(ctx.outDir, "serial-1-demo.log")], {
    stdout: "inherit",
    stderr: "ignore",
  });
  try {
    broker = await startBroker({
      port,
      resources: {
        "default/key/rootfs": new TextEncoder().encode(keys.rootfs),
        "default/key/delta": new TextEncoder().encode(keys.delta),
      },
    });
    const boot = await ctx.boot(disk, { label: "demo", uefi: true, network: true, timeoutSec: 1200 });
    await Bun.sleep(500);
    tail.kill();
    section("result");
    const m = boot.markers;
    console.log(`root device:         ${m.get("root-source") ?? "(not reached)"}`);
    console.log(`system state:        ${m.get("system-running") ?? "(not reached)"}`);
    console.log(`key broker:          ${JSON.stringify(broker.stats)}`);
    console.log(`console log:         ${boot.serialLog}`);
    return m.get("root-source") === "/dev/mapper/rootfs" ? 0 : 1;
  } finally {
    tail.kill();
    await broker?.stop();
    clearConvertCache(repo);
  }
}

process.exit(await main());
