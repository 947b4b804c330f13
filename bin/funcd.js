#!/usr/bin/env node
// Thin launcher so `npx funcd` and `npm start` run the compiled CLI.
import "../dist/cli/main.js";
