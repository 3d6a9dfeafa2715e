// Closed-loop HTTP load with autocannon (npm), POSTing JSON bodies round-robin from a file.
//   node bench/autocannon_bodies.js URL BODIES.json CONNECTIONS SECONDS   -> autocannon's result JSON on stdout
// NODE_PATH must reach the autocannon package (bench/triton_load.py sets it).
const fs = require('fs');
const autocannon = require('autocannon');
const [url, bodiesFile, connections, seconds] = process.argv.slice(2);
const bodies = JSON.parse(fs.readFileSync(bodiesFile, 'utf8')).map((b) => JSON.stringify(b));
let next = 0;
autocannon({
  url, connections: Number(connections), duration: Number(seconds), timeout: 60,
  requests: [{ method: 'POST', headers: { 'content-type': 'application/json' },
    setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }) }],
}, (err, result) => {
  if (err) { console.error(String(err)); process.exit(1); }
  process.stdout.write(JSON.stringify(result));
});
