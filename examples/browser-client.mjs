// In a web page (bundlers pick the browser build): the page's database
// talks to its server through a Socket, which reconnects by itself and
// keeps what is sent while it is offline.
import database from 'mytosis'
import Socket from 'mytosis-websocket'

const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
const socket = new Socket(`${scheme}://${location.host}/live`)
const db = database({ network: socket })

socket.on('open', () => db.read('greeting'))
socket.messages.forEach((message) => {
  console.log(`page got ${JSON.stringify(message)}`)
  socket.close()
})
