/** Errors of the KBS client: each names the URL, the protocol step and what the server said. */
import { KeyProviderError } from "../errors.ts";

export type KbsStep = "auth" | "attest" | "resource";

/** trustee error bodies are `{type: ".../errors/<Variant>", detail}`; keep the variant name. */
export interface KbsErrorInfo {
  type?: string;
  detail?: string;
}

export class KbsError extends KeyProviderError {
  override name = "KbsError";
  readonly step: KbsStep;
  readonly url: string;
  readonly status?: number;
  readonly kbsType?: string;
  /** The broker's error body (type, detail), escaped. */
  readonly info?: KbsErrorInfo;
  /** Connection failures and 5xx: worth another attempt. */
  readonly retryable: boolean;
  /** The message without provider, step and URL (for retry logs and the final summary). */
  readonly reason: string;

  constructor(
    step: KbsStep,
    url: string,
    message: string,
    options: {
      status?: number;
      info?: KbsErrorInfo;
      retryable?: boolean;
      cause?: unknown;
      hint?: string;
    } = {},
  ) {
    const kbsType = options.info?.type?.split("/").pop();
    const status = options.status === undefined ? "" : `: HTTP ${options.status}`;
    const server =
      kbsType || options.info?.detail ? ` ${[kbsType, options.info?.detail].filter(Boolean).join(": ")}` : "";
    const reason = `${message}${status}${server}`;
    super("kbs", `${step} request to ${url} ${reason}`, {
      cause: options.cause,
      hint: options.hint,
    });
    this.step = step;
    this.url = url;
    this.status = options.status;
    this.kbsType = kbsType;
    this.info = options.info;
    this.retryable = options.retryable ?? false;
    this.reason = reason;
  }
}
