/**
 * Test servers with fresh credentials plus the fde.toml a guest uses with them: rootfs key through
 * oidc (token command -> STS AssumeRoleWithOIDC -> KMS gateway), delta key from the KMS instance
 * with a client key (pinned TLS). Shared by the `aliyun` VM scenario and `serve.ts`.
 */
import { randomBytes } from "node:crypto";
import { aliyunTables, serviceHostNames } from "./config.ts";
import { makeIssuer } from "./issuer.ts";
import { makeMaterial } from "./material.ts";
import { AliyunWorld } from "./servers.ts";

const PROVIDER = "acs:ram::1234567890:oidc-provider/VmTestIdp";
const ROLE = "acs:ram::1234567890:role/vm-test-boot";
const ISSUER = "https://oidc.vm-test.example";
const AUDIENCE = "cryptpilot-fde-vm-test";

export interface GuestSetup {
  world: AliyunWorld;
  /** fde.toml for the guest, URLs on the guest's address of this host. */
  fde: string;
  /** The passphrases the providers yield (printable, so they can go to `--rootfs-key-file`). */
  rootfsKey: string;
  deltaKey: string;
  /** With `byName`: host name -> `guestHost`, the records the guest's DNS server must serve. */
  dnsRecords: Record<string, string>;
}

/**
 * `guestHost` replaces 127.0.0.1 in the URLs (10.0.2.2 under QEMU user networking), or with
 * `byName` is where the services' real host names must resolve to (the instance endpoint then
 * listens on 127.0.0.1:443 so its default URL works). The OIDC token is baked into fde.toml, so it
 * must outlive `tokenTtlSec`.
 */
export async function startGuestWorld(
  guestHost: string,
  tokenTtlSec: number,
  options: { byName?: boolean } = {},
): Promise<GuestSetup> {
  const material = makeMaterial();
  const issuer = await makeIssuer(ISSUER, AUDIENCE);
  const token = await issuer.token({
    exp: Math.floor(Date.now() / 1000) + tokenTtlSec,
    sub: "vm-test-guest",
  });
  const rootfsKey = randomBytes(24).toString("hex");
  const deltaKey = randomBytes(24).toString("hex");
  const world = await AliyunWorld.start({
    material,
    // oidc yields the raw secret; kms base64-decodes it (as upstream cryptpilot).
    secrets: { "vm-rootfs": rootfsKey, "vm-delta": Buffer.from(deltaKey).toString("base64") },
    oidcProvider: { arn: PROVIDER, issuer: ISSUER, clientIds: [AUDIENCE], jwks: [issuer.jwk] },
    roles: { [ROLE]: PROVIDER },
    ecsRoles: ["VmTestRole"],
    ...(options.byName ? { instancePort: 443 } : {}),
  });
  const tables = aliyunTables(world, material, guestHost, options.byName);
  const dnsRecords = options.byName
    ? Object.fromEntries(Object.values(serviceHostNames(world, material)).map((n) => [n, guestHost]))
    : {};
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
  return { world, fde, rootfsKey, deltaKey, dnsRecords };
}
