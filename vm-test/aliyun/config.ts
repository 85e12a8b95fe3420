/**
 * fde.toml provider tables that point the kms and oidc providers at running test servers, all
 * inline so the file alone (e.g. inside a guest initrd) is enough.
 */
import type { Material } from "./material.ts";
import type { AliyunWorld } from "./servers.ts";

export interface AliyunTables {
  /** `[<volume>.encrypt.kms]` with a client key, reading `secretName`. */
  kms(volume: string, secretName: string): string;
  /** `[<volume>.encrypt.oidc]` whose token command prints `token`. */
  oidc(volume: string, secretName: string, token: string, arns: { provider: string; role: string }): string;
}

const q = (s: string) => JSON.stringify(s);
const multiline = (s: string) => `'''\n${s.replace(/\n$/, "")}'''`;

/** The services' real host names, as the providers build them when no endpoint is configured. */
export function serviceHostNames(
  world: AliyunWorld,
  material: Material,
): Record<"instance" | "sts" | "kms", string> {
  return {
    instance: `${material.kmsInstanceId}.cryptoservice.kms.aliyuncs.com`,
    sts: `sts.${world.regionId}.aliyuncs.com`,
    kms: `kms.${world.regionId}.aliyuncs.com`,
  };
}

/**
 * `host` replaces 127.0.0.1 in the URLs (10.0.2.2 for a QEMU user-network guest). With `byName`
 * the URLs use the services' real host names instead (a test DNS server resolves them), and the
 * instance endpoint is left to its default when it listens on 443. STS and the shared gateway
 * keep an endpoint: the test servers speak plain HTTP there, since the agent trusts only public
 * CAs for them.
 */
export function aliyunTables(
  world: AliyunWorld,
  material: Material,
  host = "127.0.0.1",
  byName = false,
): AliyunTables {
  const names = serviceHostNames(world, material);
  const url = (s: "instance" | "sts" | "kms") => world.url(s).replace("127.0.0.1", byName ? names[s] : host);
  const instanceDefault = byName && world.port("instance") === 443;
  return {
    kms: (volume, secretName) =>
      [
        `[${volume}.encrypt.kms]`,
        `kms_instance_id = ${q(material.kmsInstanceId)}`,
        `secret_name = ${q(secretName)}`,
        `client_key = ${multiline(material.clientKey.json)}`,
        `client_key_password = ${q(material.clientKey.password)}`,
        `kms_cert_pem = ${multiline(material.caPem)}`,
        ...(instanceDefault ? [] : [`endpoint = ${q(url("instance"))}`]),
        "",
      ].join("\n"),
    oidc: (volume, secretName, token, arns) =>
      [
        `[${volume}.encrypt.oidc]`,
        `command = "printf"`,
        `args = ["%s", ${q(token)}]`,
        `key_id = ${q(secretName)}`,
        "",
        `[${volume}.encrypt.oidc.kms]`,
        `type = "aliyun"`,
        `oidc_provider_arn = ${q(arns.provider)}`,
        `role_arn = ${q(arns.role)}`,
        `region_id = ${q(world.regionId)}`,
        `sts_endpoint = ${q(url("sts"))}`,
        `endpoint = ${q(url("kms"))}`,
        "",
      ].join("\n"),
  };
}
