import { notYetAvailable } from "./not-yet.ts";

export default notYetAvailable(
  ["convert"],
  "Convert a plain disk image into the encrypted, verity-protected FDE layout",
);
