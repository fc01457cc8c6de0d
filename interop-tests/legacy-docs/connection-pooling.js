const { IPCClient } = require('./ipc-framework-nodejs');

class IPCConnectionPool {
    constructor(poolName, options = {}) {
        this.poolName = poolName;
        this.minConnections = options.minConnections || 2;
        this.maxConnections = options.maxConnections || 10;
        this.connectionOptions = options.connectionOptions || {};
        
        this.connections = [];
        this.availableConnections = [];
        this.waitingRequests = [];
        this.isInitialized = false;
    }
    
    async initialize() {
        // Create minimum connections
        for (let i = 0; i < this.minConnections; i++) {
            const connection = await this.createConnection(i);
            this.connections.push(connection);
            this.availableConnections.push(connection);
        }
        
        this.isInitialized = true;
        console.log(`âœ… Connection pool ${this.poolName} initialized with ${this.minConnections} connections`);
    }
    
    async createConnection(id) {
        const client = new IPCClient(`${this.poolName}-pool-${id}`, {
            ...this.connectionOptions
        });
        
        const connected = await client.connect();
        if (!connected) {
            throw new Error(`Failed to create pool connection ${id}`);
        }
        
        return {
            id: id,
            client: client,
            inUse: false,
            createdAt: Date.now(),
            lastUsed: Date.now()
        };
    }
    
    async getConnection() {
        if (!this.isInitialized) {
            throw new Error('Connection pool not initialized');
        }
        
        // Check for available connection
        if (this.availableConnections.length > 0) {
            const connection = this.availableConnections.pop();
            connection.inUse = true;
            connection.lastUsed = Date.now();
            return connection;
        }
        
        // Create new connection if under max limit
        if (this.connections.length < this.maxConnections) {
            const connection = await this.createConnection(this.connections.length);
            this.connections.push(connection);
            connection.inUse = true;
            return connection;
        }
        
        // Wait for available connection
        return new Promise((resolve) => {
            this.waitingRequests.push(resolve);
        });
    }
    
    releaseConnection(connection) {
        connection.inUse = false;
        
        // Serve waiting request if any
        if (this.waitingRequests.length > 0) {
            const resolve = this.waitingRequests.shift();
            connection.inUse = true;
            connection.lastUsed = Date.now();
            resolve(connection);
        } else {
            this.availableConnections.push(connection);
        }
    }
    
    async executeRequest(channelId, payload, timeout) {
        const connection = await this.getConnection();
        
        try {
            const response = await connection.client.sendRequest(channelId, payload, timeout);
            return response;
        } finally {
            this.releaseConnection(connection);
        }
    }
    
    async shutdown() {
        for (const connection of this.connections) {
            connection.client.disconnect();
        }
        
        this.connections = [];
        this.availableConnections = [];
        this.waitingRequests = [];
        this.isInitialized = false;
    }
    
    getStats() {
        return {
            total: this.connections.length,
            available: this.availableConnections.length,
            inUse: this.connections.filter(c => c.inUse).length,
            waiting: this.waitingRequests.length
        };
    }
}

// Usage
const pool = new IPCConnectionPool('api-pool', {
    minConnections: 3,
    maxConnections: 15,
    connectionOptions: {
        host: 'localhost',
        port: 8888,
        reconnectAttempts: 5
    }
});

pool.initialize().then(async () => {
    // Use the pool for requests
    try {
        const response = await pool.executeRequest('api', {
            action: 'get_data',
            id: 123
        });
        
        console.log('Response:', response.payload);
        console.log('Pool stats:', pool.getStats());
    } catch (error) {
        console.error('Request failed:', error.message);
    }
});
