/**
 * End to end as in the VM scenarios and `make demo`: the broker started as a command (HTTPS with
 * its own CA, down for the first second), and the compiled agent fetching both boot keys with
 * `kbs_root_cert` pinned, over one attestation.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const BINARY = join(ROOT, "dist/cryptpilot-fde");
const dir = mkdtempSync(join(tmpdir(), "kbs-cli-"));
const children: Bun.Subprocess[] = [];

beforeAll(() => {
  const build = Bun.spawnSync(["make", "-s", "--no-print-directory", "build"], { cwd: ROOT });
  if (build.exitCode !== 0) throw new Error(`make build failed:\n${build.stderr.toString()}`);
}, 180_000);
afterAll(() => {
  for (const c of children) c.kill();
});

async function freePort(): Promise<number> {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

/** Read a child's stdout until a line matches. */
async function waitForLine(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
): Promise<{ line: string; rest: () => Promise<string> }> {
  const reader = stream.getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended before ${pattern}: ${text}`);
    text += new TextDecoder().decode(value);
    const line = text.split("\n").find((l) => pattern.test(l));
    if (line) {
      return {
        line,
        rest: async () => {
          for (;;) {
            const r = await reader.read();
            if (r.done) return text;
            text += new TextDecoder().decode(r.value);
          }
        },
      };
    }
  }
}

/** The test broker as a command (vm-test/kbs/server.ts ARGS), its stdout piped for waitForLine. */
function startServer(args: string[]): Bun.Subprocess<"ignore", "pipe", "inherit"> {
  const broker = Bun.spawn([BUN, join(ROOT, "vm-test/kbs/server.ts"), ...args], {
    stdout: "pipe",
    stderr: "inherit",
  });
  children.push(broker);
  return broker;
}

/** A configuration directory `name` under the test dir holding `fdeToml`. */
function configDir(name: string, fdeToml = ""): string {
  const conf = join(dir, name);
  mkdirSync(conf, { recursive: true });
  if (fdeToml) writeFileSync(join(conf, "fde.toml"), fdeToml);
  return conf;
}

/** fde.toml with the rootfs unencrypted and the delta's key from the broker at `url` (documented fields). */
const deltaOnly = (url: string, tee = "") =>
  `[rootfs]\ndelta_location = "ram"\n[delta]\n[delta.encrypt.kbs]\nurl = "${url}"\nresource_path = "key/delta"\n${tee}`;

/** The compiled agent with ARGS, run to the end: its output and exit code. */
async function agent(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const child = Bun.spawn([BINARY, ...args], { stdout: "pipe", stderr: "pipe" });
  children.push(child);
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { stdout, stderr, code };
}

/** `config check` of `conf` by the compiled agent, synchronously. */
const configCheck = (conf: string) =>
  Bun.spawnSync([BINARY, "-c", conf, "config", "check"], { stdout: "pipe", stderr: "pipe" });

test("broker CLI over HTTPS with its own CA, down for 1 s; compiled agent gets rootfs and delta keys with one attestation", async () => {
  writeFileSync(join(dir, "rootfs.key"), "rootfs \u00e9 passphrase");
  const port = await freePort();
  const broker = startServer([
    "--port",
    String(port),
    "--resource",
    `default/key/rootfs=@${join(dir, "rootfs.key")}`,
    "--resource",
    "default/key/delta=delta-passphrase",
    "--tls-dir",
    dir,
    "--start-delay",
    "1",
  ]);
  const pem = () => readFileSync(join(dir, "ca.pem"), "utf8");
  const conf = configDir("etc");
  const kbs = (volume: string) =>
    `[${volume}.encrypt.kbs]\nkbs_url = "https://127.0.0.1:${port}"\nkey_uri = "kbs:///default/key/${volume}"\ntee = "sample"\nkbs_root_cert = """\n__PEM__"""\n`;
  const writeConfig = () =>
    writeFileSync(
      join(conf, "fde.toml"),
      `[rootfs]\ndelta_location = "ram"\n${kbs("rootfs")}\n[delta]\n${kbs("delta")}`.replaceAll(
        "__PEM__",
        pem(),
      ),
    );

  // The CA is made before the delayed start: pin it, then start the agent while the broker is
  // still down; it retries until the broker listens.
  const caLine = await waitForLine(broker.stdout, /^CA: /);
  writeConfig();
  const fetched = await agent(["-c", conf, "fetch-key", "--volume", "rootfs"]);
  const rest = caLine.rest;
  expect(fetched.stderr).toContain("could not be completed");
  expect(fetched.stderr).toContain("attested to");
  expect(fetched.code).toBe(0);
  expect(fetched.stdout).toBe("rootfs \u00e9 passphrase");
  const check = configCheck(conf);
  expect(check.exitCode).toBe(0);
  expect(check.stderr.toString().match(/attested to/g)?.length).toBe(1);
  broker.kill();
  const out = await rest();
  const stats = JSON.parse(
    out
      .split("\n")
      .find((l) => l.startsWith("stats "))!
      .slice(6),
  );
  // fetch-key: 1 attestation; config check (both volumes, one process): 1 attestation.
  expect(stats).toMatchObject({ auth: 2, attest: 2, resource: 3, attestations: 2 });
}, 60_000);

test("agent started before the broker: retries until it is up", async () => {
  const port = await freePort();
  const conf = configDir("etc2", deltaOnly(`http://127.0.0.1:${port}`, 'tee = "sample"\n'));
  const fetched = agent(["-c", conf, "fetch-key", "--volume", "delta"]);
  await Bun.sleep(2500);
  startServer(["--port", String(port), "--resource", "default/key/delta=late-key"]);
  const { stdout, stderr, code } = await fetched;
  expect(stderr).toContain(`auth request to http://127.0.0.1:${port}/kbs/v0/auth could not be completed`);
  expect(stderr).toContain("retrying in");
  expect(code).toBe(0);
  expect(stdout).toBe("late-key");
}, 60_000);

test("policy denial: the compiled agent exits non-zero with the broker's reason, no stack trace", async () => {
  const port = await freePort();
  const broker = startServer([
    "--port",
    String(port),
    "--policy",
    "deny-all",
    "--resource",
    "default/key/delta=x",
  ]);
  await waitForLine(broker.stdout, /^listening on/);
  const conf = configDir("etc3", deltaOnly(`http://127.0.0.1:${port}`));
  const r = Bun.spawnSync([BINARY, "-c", conf, "fetch-key", "--volume", "delta"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, CRYPTPILOT_TEE: "sample" },
  });
  const err = r.stderr.toString();
  expect(r.exitCode).not.toBe(0);
  expect(err).toContain(
    "was refused: HTTP 401 PolicyDeny: Resource policy denied access to default/key/delta for TEE sample",
  );
  expect(err).not.toContain("    at ");
  broker.kill();
}, 60_000);

test("--out writes a guest config (fde.toml, keys) that the agent uses as is", async () => {
  const out = join(dir, "out");
  const broker = startServer([
    "--port",
    "0",
    "--out",
    out,
    "--guest-host",
    "127.0.0.1",
    "--tls-dir",
    join(dir, "pki"),
  ]);
  const { rest } = await waitForLine(broker.stdout, /^listening on https:/);
  const r = Bun.spawnSync([BINARY, "-c", out, "fetch-key", "--volume", "rootfs"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.stderr.toString()).toContain("attested to https://127.0.0.1:");
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toBe(readFileSync(join(out, "rootfs.key"), "utf8"));
  expect(readFileSync(join(out, "rootfs.key"), "utf8")).toMatch(/^[0-9a-f]{48}$/);
  expect(configCheck(out).exitCode).toBe(0);
  broker.kill();
  expect(await rest()).toContain('"attestations":2');
}, 60_000);
