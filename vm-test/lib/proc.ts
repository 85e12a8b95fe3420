/** Runs host commands for the harness; a failure throws with the command's stderr. */
export async function shText(
  argv: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const proc = Bun.spawn(argv, {
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) {
    throw new Error(
      `${argv.join(" ")} exited ${code}\n${(err || out).trim().split("\n").slice(-20).join("\n")}`,
    );
  }
  return out;
}

export async function sh(
  argv: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<void> {
  await shText(argv, opts);
}
