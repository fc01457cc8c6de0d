const express = require('express');
const { IPCClient } = require('./ipc-framework-nodejs');

const app = express();
app.use(express.json());

// Initialize IPC client
const ipcClient = new IPCClient('express-api-server', {
    host: 'localhost',
    port: 8888,
    reconnectAttempts: 5
});

// Connect to Python server on startup
async function initializeIPC() {
    const connected = await ipcClient.connect();
    if (!connected) {
        console.error('Failed to connect to Python server');
        process.exit(1);
    }
    console.log('âœ… Connected to Python IPC server');
}

// Middleware to attach IPC client to requests
app.use((req, res, next) => {
    req.ipc = ipcClient;
    next();
});

// API endpoints
app.get('/api/users', async (req, res) => {
    try {
        const response = await req.ipc.sendRequest('user_service', {
            action: 'get_all_users',
            filters: req.query
        });
        
        res.json({
            success: true,
            users: response.payload
        });
    } catch (error) {
        res.status(500).json({
            success: false,
            error: error.message
        });
    }
});

app.post('/api/users', async (req, res) => {
    try {
        const response = await req.ipc.sendRequest('user_service', {
            action: 'create_user',
            user_data: req.body
        });
        
        res.json({
            success: true,
            user: response.payload
        });
    } catch (error) {
        res.status(500).json({
            success: false,
            error: error.message
        });
    }
});

// Real-time events using Server-Sent Events
app.get('/api/events', (req, res) => {
    res.writeHead(200, {
        'Content-Type': 'text/event-stream',
        'Cache-Control': 'no-cache',
        'Connection': 'keep-alive',
        'Access-Control-Allow-Origin': '*'
    });
    
    // Subscribe to notifications
    req.ipc.subscribe('notifications', (message) => {
        res.write(`data: ${JSON.stringify(message.payload)}\n\n`);
    });
    
    // Send initial connection message
    res.write(`data: ${JSON.stringify({ type: 'connected', timestamp: Date.now() })}\n\n`);
    
    // Clean up on disconnect
    req.on('close', () => {
        req.ipc.unsubscribe('notifications');
    });
});

// Health check endpoint
app.get('/health', async (req, res) => {
    try {
        const isHealthy = await ipcClient.healthCheck();
        res.json({
            status: isHealthy ? 'healthy' : 'unhealthy',
            timestamp: new Date().toISOString()
        });
    } catch (error) {
        res.status(500).json({
            status: 'error',
            message: error.message
        });
    }
});

// Start server
const PORT = process.env.PORT || 3000;

async function startServer() {
    await initializeIPC();
    
    app.listen(PORT, () => {
        console.log(`ðŸš€ Express server running on port ${PORT}`);
        console.log(`ðŸ“¡ IPC connection established`);
    });
}

// Graceful shutdown
process.on('SIGINT', () => {
    console.log('Shutting down...');
    ipcClient.disconnect();
    process.exit(0);
});

startServer();
