// dynalite, minus one crash: its request handler rethrows a request's 'error' event, so a
// client that dies mid-request (a gateway killed with kill -9 while it writes: the crash
// tests) takes the whole emulator down -- which DynamoDB itself never does. That one error
// (the client's connection reset; the half-sent request is dropped, as DynamoDB drops it)
// is logged and survived; anything else still ends the process.
'use strict'
const path = require('path')

process.on('uncaughtException', function (err) {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error('dynalite: a client went away mid-request (dropped): ' + err.message)
    return
  }
  console.error(err)
  process.exit(1)
})

require(path.join(__dirname, '..', '..', 'node_modules', 'dynalite', 'cli.js'))
