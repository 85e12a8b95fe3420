import { onGuest } from "../lib/scenario.ts";
import baseImage from "./base-image.ts";

export default onGuest("trixie", baseImage);
