const { IPCClient } = require('./ipc-framework-nodejs');

async function notificationExample() {
    const client = new IPCClient('notification-app');
    
    await client.connect();
    
    // Subscribe to status updates
    client.subscribe('status', (message) => {
        console.log('Status update:', message.payload);
    });
    
    // Subscribe to alerts
    client.subscribe('alerts', (message) => {
        console.log('Alert received:', message.payload);
    });
    
    // Keep running to receive notifications
    console.log('Listening for notifications... Press Ctrl+C to exit');
    
    process.on('SIGINT', () => {
        client.disconnect();
        process.exit(0);
    });
}

notificationExample();
