// Validates Adaptive Card JSON files with the official adaptivecards SDK, targeting version 1.5 (what Teams renders).
// Usage: node tests/node/validate_cards.js <card.json | directory> ...
// Prints "<file>: OK" or one line per parse/validation event; exits 1 if any file has an event or does not parse.
'use strict';

const fs = require('fs');
const path = require('path');
// The package's ESM build (lib/) uses extensionless imports that Node cannot resolve; the UMD bundle loads fine.
const AC = require('adaptivecards/dist/adaptivecards.js');

function cardFiles(args) {
  const files = [];
  for (const arg of args) {
    if (fs.statSync(arg).isDirectory()) {
      for (const name of fs.readdirSync(arg).sort()) {
        if (name.endsWith('.json')) files.push(path.join(arg, name));
      }
    } else {
      files.push(arg);
    }
  }
  return files;
}

function cardEvents(json) {
  const card = new AC.AdaptiveCard();
  // Target the host's version, not the card's: the SDK only flags features newer than the context's version.
  const context = new AC.SerializationContext(AC.Versions.v1_5);
  card.parse(json, context);
  const events = [];
  for (let i = 0; i < context.eventCount; i++) events.push(context.getEventAt(i));
  events.push(...card.validateProperties().validationEvents);
  return events.map((e) => `[${AC.ValidationPhase[e.phase]}] ${AC.ValidationEvent[e.event]}: ${e.message}`);
}

function main(args) {
  if (args.length === 0) {
    console.error('usage: node validate_cards.js <card.json | directory> ...');
    return 2;
  }
  const files = cardFiles(args);
  if (files.length === 0) {
    console.error('no card files found in: ' + args.join(' '));
    return 2;
  }
  let failed = 0;
  for (const file of files) {
    let problems;
    try {
      problems = cardEvents(JSON.parse(fs.readFileSync(file, 'utf8')));
    } catch (error) {
      problems = [`[Read] ${error.message}`];
    }
    if (problems.length === 0) {
      console.log(`${file}: OK`);
    } else {
      failed++;
      console.log(`${file}: ${problems.length} event(s)`);
      for (const problem of problems) console.log(`    ${problem}`);
    }
  }
  console.log(`${files.length - failed}/${files.length} cards valid`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
