const { IPCClient } = require('./ipc-framework-nodejs');

class PerformantIPCClient {
    constructor(appId, options = {}) {
        this.appId = appId;
        this.client = new IPCClient(appId, options);
        
        // Request batching
        this.batchQueue = [];
        this.batchTimeout = options.batchTimeout || 10;
        this.maxBatchSize = options.maxBatchSize || 50;
        this.batchTimer = null;
        
        // Response caching
        this.cache = new Map();
        this.cacheTimeout = options.cacheTimeout || 60000; // 1 minute
        
        // Request deduplication
        this.pendingRequests = new Map();
        
        // Performance metrics
        this.metrics = {
            requestCount: 0,
            errorCount: 0,
            cacheHits: 0,
            cacheMisses: 0,
            avgResponseTime: 0,
            batchedRequests: 0
        };
    }
    
    async connect() {
        return await this.client.connect();
    }
    
    // Cached request
    async cachedRequest(channelId, payload, options = {}) {
        const cacheKey = this.generateCacheKey(channelId, payload);
        const ttl = options.cacheTtl || this.cacheTimeout;
        
        // Check cache first
        const cached = this.cache.get(cacheKey);
        if (cached && Date.now() - cached.timestamp < ttl) {
            this.metrics.cacheHits++;
            return cached.data;
        }
        
        this.metrics.cacheMisses++;
        
        // Make request
        const response = await this.client.sendRequest(channelId, payload);
        
        // Cache the response
        this.cache.set(cacheKey, {
            data: response,
            timestamp: Date.now()
        });
        
        // Clean up old cache entries periodically
        this.cleanupCache();
        
        return response;
    }
    
    // Batched request
    async batchedRequest(channelId, payload, options = {}) {
        return new Promise((resolve, reject) => {
            this.batchQueue.push({
                channelId,
                payload,
                options,
                resolve,
                reject,
                timestamp: Date.now()
            });
            
            // Schedule batch processing
            if (!this.batchTimer) {
                this.batchTimer = setTimeout(() => {
                    this.processBatch();
                }, this.batchTimeout);
            }
            
            // Process immediately if batch is full
            if (this.batchQueue.length >= this.maxBatchSize) {
                clearTimeout(this.batchTimer);
                this.processBatch();
            }
        });
    }
    
    // Deduplicated request
    async deduplicatedRequest(channelId, payload, options = {}) {
        const requestKey = this.generateRequestKey(channelId, payload);
        
        // Check if same request is already pending
        if (this.pendingRequests.has(requestKey)) {
            return await this.pendingRequests.get(requestKey);
        }
        
        // Create new request promise
        const requestPromise = this.measureRequest(async () => {
            return await this.client.sendRequest(channelId, payload, options.timeout);
        });
        
        // Store pending request
        this.pendingRequests.set(requestKey, requestPromise);
        
        try {
            const result = await requestPromise;
            return result;
        } finally {
            // Clean up pending request
            this.pendingRequests.delete(requestKey);
        }
    }
    
    async processBatch() {
        if (this.batchQueue.length === 0) return;
        
        const batch = this.batchQueue.splice(0, this.maxBatchSize);
        this.batchTimer = null;
        
        try {
            // Group by channel
            const channelGroups = batch.reduce((groups, request) => {
                if (!groups[request.channelId]) {
                    groups[request.channelId] = [];
                }
                groups[request.channelId].push(request);
                return groups;
            }, {});
            
            // Process each channel group
            const promises = Object.entries(channelGroups).map(([channelId, requests]) => {
                return this.processBatchForChannel(channelId, requests);
            });
            
            await Promise.all(promises);
            
            this.metrics.batchedRequests += batch.length;
            
        } catch (error) {
            // Reject all requests in batch
            batch.forEach(request => {
                request.reject(error);
            });
        }
        
        // Process remaining requests if any
        if (this.batchQueue.length > 0) {
            this.batchTimer = setTimeout(() => {
                this.processBatch();
            }, this.batchTimeout);
        }
    }
    
    async processBatchForChannel(channelId, requests) {
        try {
            const batchPayload = {
                action: 'batch_process',
                requests: requests.map((req, index) => ({
                    id: index,
                    payload: req.payload
                }))
            };
            
            const response = await this.client.sendRequest(channelId, batchPayload);
            
            // Distribute responses
            if (response.payload.responses) {
                response.payload.responses.forEach((resp, index) => {
                    if (requests[index]) {
                        requests[index].resolve({ payload: resp });
                    }
                });
            } else {
                // Fallback: process individually
                await this.processBatchIndividually(channelId, requests);
            }
            
        } catch (error) {
            // Fallback: process individually
            await this.processBatchIndividually(channelId, requests);
        }
    }
    
    async processBatchIndividually(channelId, requests) {
        const promises = requests.map(async (request) => {
            try {
                const response = await this.client.sendRequest(channelId, request.payload);
                request.resolve(response);
            } catch (error) {
                request.reject(error);
            }
        });
        
        await Promise.allSettled(promises);
    }
    
    async measureRequest(requestFn) {
        const startTime = Date.now();
        this.metrics.requestCount++;
        
        try {
            const result = await requestFn();
            
            // Update average response time
            const responseTime = Date.now() - startTime;
            this.metrics.avgResponseTime = (
                (this.metrics.avgResponseTime * (this.metrics.requestCount - 1)) + responseTime
            ) / this.metrics.requestCount;
            
            return result;
            
        } catch (error) {
            this.metrics.errorCount++;
            throw error;
        }
    }
    
    generateCacheKey(channelId, payload) {
        return `${channelId}:${JSON.stringify(payload)}`;
    }
    
    generateRequestKey(channelId, payload) {
        return `${channelId}:${JSON.stringify(payload)}`;
    }
    
    cleanupCache() {
        if (this.cache.size > 1000) { // Cleanup when cache gets large
            const now = Date.now();
            for (const [key, value] of this.cache.entries()) {
                if (now - value.timestamp > this.cacheTimeout) {
                    this.cache.delete(key);
                }
            }
        }
    }
    
    getMetrics() {
        return {
            ...this.metrics,
            cacheSize: this.cache.size,
            pendingRequests: this.pendingRequests.size,
            queuedBatches: this.batchQueue.length
        };
    }
    
    clearCache() {
        this.cache.clear();
    }
    
    disconnect() {
        if (this.batchTimer) {
            clearTimeout(this.batchTimer);
        }
        this.client.disconnect();
    }
}

// Usage
const performantClient = new PerformantIPCClient('perf-app', {
    batchTimeout: 5,
    maxBatchSize: 25,
    cacheTimeout: 30000
});

performantClient.connect().then(async () => {
    // Cached request
    const userData = await performantClient.cachedRequest('user_service', {
        action: 'get_user',
        user_id: 123
    }, { cacheTtl: 60000 });
    
    // Batched requests
    const promises = [];
    for (let i = 0; i < 10; i++) {
        promises.push(
            performantClient.batchedRequest('data_service', {
                action: 'process_item',
                item_id: i
            })
        );
    }
    
    const results = await Promise.all(promises);
    console.log('Batch results:', results.length);
    
    // Performance metrics
    console.log('Metrics:', performantClient.getMetrics());
});
