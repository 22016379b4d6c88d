// The OpenAPI 3 document served at GET /openapi.json. Written by hand, with the handlers in
// api.cc; tests/server/server_test.py checks that every route the server answers is described.
#include "server/openapi.h"

namespace fathom::server {

const std::string& OpenApiJson() {
  static const std::string kDocument = R"json({
 "openapi": "3.0.3",
 "info": {
  "title": "Fathom REST API",
  "version": "0.1.0",
  "description": "A Qdrant-like REST API over an embedded Fathom database. Every JSON response is {\"result\", \"status\", \"time\"}; errors carry status {\"error\": message} and an HTTP 4xx/5xx code. Unknown fields in bodies are rejected with 400."
 },
 "servers": [
  {
   "url": "http://127.0.0.1:6333"
  }
 ],
 "security": [
  {
   "ApiKeyHeader": []
  },
  {
   "BearerAuth": []
  },
  {}
 ],
 "tags": [
  {
   "name": "service"
  },
  {
   "name": "collections"
  },
  {
   "name": "points"
  },
  {
   "name": "snapshots"
  }
 ],
 "paths": {
  "/": {
   "get": {
    "tags": [
     "service"
    ],
    "summary": "Server name and version",
    "operationId": "root",
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "object"
            }
           }
          }
         ]
        }
       }
      }
     }
    },
    "description": "Needs no API key."
   }
  },
  "/healthz": {
   "get": {
    "tags": [
     "service"
    ],
    "summary": "Liveness: 200 while the process serves",
    "operationId": "healthz",
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "object"
            }
           }
          }
         ]
        }
       }
      }
     }
    },
    "description": "Needs no API key."
   }
  },
  "/readyz": {
   "get": {
    "tags": [
     "service"
    ],
    "summary": "Readiness: 200 while the database is open, 503 while shutting down",
    "operationId": "readyz",
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "object"
            }
           }
          }
         ]
        }
       }
      }
     },
     "503": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Needs no API key."
   }
  },
  "/metrics": {
   "get": {
    "tags": [
     "service"
    ],
    "summary": "Prometheus metrics",
    "operationId": "metrics",
    "description": "Requests and latency histograms per route template, method and status code; points and index memory per collection.",
    "responses": {
     "200": {
      "description": "Prometheus text format 0.0.4",
      "content": {
       "text/plain": {
        "schema": {
         "type": "string"
        }
       }
      }
     },
     "401": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/openapi.json": {
   "get": {
    "tags": [
     "service"
    ],
    "summary": "This document",
    "operationId": "openapi",
    "responses": {
     "200": {
      "description": "OpenAPI 3 document",
      "content": {
       "application/json": {
        "schema": {
         "type": "object"
        }
       }
      }
     },
     "401": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/collections": {
   "get": {
    "tags": [
     "collections"
    ],
    "summary": "List collections",
    "operationId": "list_collections",
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "object",
             "properties": {
              "collections": {
               "type": "array",
               "items": {
                "type": "object",
                "properties": {
                 "name": {
                  "type": "string"
                 }
                }
               }
              }
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "401": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/collections/{name}": {
   "get": {
    "tags": [
     "collections"
    ],
    "summary": "Collection info: spec, points_count, memory_bytes",
    "operationId": "get_collection",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "$ref": "#/components/schemas/CollectionInfo"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     }
    }
   },
   "put": {
    "tags": [
     "collections"
    ],
    "summary": "Create a collection",
    "operationId": "create_collection",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "boolean"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "409": {
      "$ref": "#/components/responses/Error"
     },
     "403": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Needs the read-write API key.",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/CreateCollection"
       }
      }
     }
    }
   },
   "delete": {
    "tags": [
     "collections"
    ],
    "summary": "Delete a collection and its points",
    "operationId": "delete_collection",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "boolean"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     },
     "403": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Its snapshots are kept. Needs the read-write API key."
   }
  },
  "/collections/{name}/points": {
   "put": {
    "tags": [
     "points"
    ],
    "summary": "Upsert points",
    "operationId": "upsert_points",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "$ref": "#/components/schemas/UpdateResult"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     },
     "413": {
      "$ref": "#/components/responses/Error"
     },
     "403": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "The batch is validated whole and written atomically; acknowledged points survive a crash. Needs the read-write API key.",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/UpsertRequest"
       }
      }
     }
    }
   },
   "post": {
    "tags": [
     "points"
    ],
    "summary": "Get points by id",
    "operationId": "get_points",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "array",
             "items": {
              "$ref": "#/components/schemas/Record"
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Missing ids are left out of the result.",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/GetPointsRequest"
       }
      }
     }
    }
   }
  },
  "/collections/{name}/points/{id}": {
   "get": {
    "tags": [
     "points"
    ],
    "summary": "Get one point with payload and vector",
    "operationId": "get_point",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     },
     {
      "name": "id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "string"
      },
      "description": "all digits is an integer id, anything else a string id"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "$ref": "#/components/schemas/Record"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/collections/{name}/points/delete": {
   "post": {
    "tags": [
     "points"
    ],
    "summary": "Delete points by id or filter",
    "operationId": "delete_points",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "$ref": "#/components/schemas/UpdateResult"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     },
     "403": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Needs the read-write API key.",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/DeleteRequest"
       }
      }
     }
    }
   }
  },
  "/collections/{name}/points/count": {
   "post": {
    "tags": [
     "points"
    ],
    "summary": "Count points, optionally matching a filter",
    "operationId": "count_points",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "object",
             "properties": {
              "count": {
               "type": "integer"
              }
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     }
    },
    "requestBody": {
     "required": false,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/CountRequest"
       }
      }
     }
    }
   }
  },
  "/collections/{name}/points/search": {
   "post": {
    "tags": [
     "points"
    ],
    "summary": "k-nearest-neighbour search",
    "operationId": "search_points",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "array",
             "items": {
              "$ref": "#/components/schemas/ScoredPoint"
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     }
    },
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/SearchRequest"
       }
      }
     }
    }
   }
  },
  "/collections/{name}/points/search/batch": {
   "post": {
    "tags": [
     "points"
    ],
    "summary": "Several searches in one request",
    "operationId": "search_batch",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "array",
             "items": {
              "type": "array",
              "items": {
               "$ref": "#/components/schemas/ScoredPoint"
              }
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     },
     "408": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Searches that differ only in their vector run together. Stops with 408 past the request time limit.",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/BatchSearchRequest"
       }
      }
     }
    }
   }
  },
  "/collections/{name}/snapshots": {
   "get": {
    "tags": [
     "snapshots"
    ],
    "summary": "List a collection's snapshots (also after it was deleted)",
    "operationId": "list_snapshots",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "array",
             "items": {
              "$ref": "#/components/schemas/SnapshotInfo"
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     }
    }
   },
   "post": {
    "tags": [
     "snapshots"
    ],
    "summary": "Snapshot a collection into DATA_DIR/snapshots/{name}/{timestamp}",
    "operationId": "create_snapshot",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "$ref": "#/components/schemas/SnapshotInfo"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     },
     "403": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Needs the read-write API key."
   }
  },
  "/collections/{name}/snapshots/recover": {
   "put": {
    "tags": [
     "snapshots"
    ],
    "summary": "Restore a snapshot as a new collection",
    "operationId": "recover_snapshot",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "object",
             "properties": {
              "name": {
               "type": "string"
              },
              "points_count": {
               "type": "integer"
              }
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     },
     "409": {
      "$ref": "#/components/responses/Error"
     },
     "403": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Needs the read-write API key.",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/RecoverRequest"
       }
      }
     }
    }
   }
  },
  "/collections/{name}/snapshots/{snapshot}": {
   "delete": {
    "tags": [
     "snapshots"
    ],
    "summary": "Delete a snapshot",
    "operationId": "delete_snapshot",
    "parameters": [
     {
      "$ref": "#/components/parameters/CollectionName"
     },
     {
      "name": "snapshot",
      "in": "path",
      "required": true,
      "schema": {
       "type": "string",
       "pattern": "^[A-Za-z0-9_.-]{1,64}$"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "allOf": [
          {
           "$ref": "#/components/schemas/Envelope"
          },
          {
           "type": "object",
           "properties": {
            "result": {
             "type": "boolean"
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/Error"
     },
     "401": {
      "$ref": "#/components/responses/Error"
     },
     "404": {
      "$ref": "#/components/responses/Error"
     },
     "403": {
      "$ref": "#/components/responses/Error"
     }
    },
    "description": "Needs the read-write API key."
   }
  }
 },
 "components": {
  "securitySchemes": {
   "ApiKeyHeader": {
    "type": "apiKey",
    "in": "header",
    "name": "api-key",
    "description": "FATHOM_API_KEY (read-write) or FATHOM_READ_ONLY_API_KEY (403 on writes)"
   },
   "BearerAuth": {
    "type": "http",
    "scheme": "bearer"
   }
  },
  "parameters": {
   "CollectionName": {
    "name": "name",
    "in": "path",
    "required": true,
    "schema": {
     "type": "string",
     "pattern": "^[A-Za-z0-9_.-]{1,64}$"
    }
   }
  },
  "responses": {
   "Error": {
    "description": "error: status.error says what was wrong",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/ErrorEnvelope"
      }
     }
    }
   }
  },
  "schemas": {
   "Envelope": {
    "type": "object",
    "required": [
     "result",
     "status",
     "time"
    ],
    "properties": {
     "result": {
      "description": "the answer; null on error"
     },
     "status": {
      "oneOf": [
       {
        "type": "string",
        "enum": [
         "ok"
        ]
       },
       {
        "$ref": "#/components/schemas/ErrorStatus"
       }
      ]
     },
     "time": {
      "type": "number",
      "description": "seconds the server spent on the request"
     }
    }
   },
   "ErrorStatus": {
    "type": "object",
    "required": [
     "error"
    ],
    "properties": {
     "error": {
      "type": "string"
     }
    }
   },
   "ErrorEnvelope": {
    "type": "object",
    "properties": {
     "result": {
      "nullable": true
     },
     "status": {
      "$ref": "#/components/schemas/ErrorStatus"
     },
     "time": {
      "type": "number"
     }
    }
   },
   "Distance": {
    "type": "string",
    "description": "Cosine, Euclid or Dot (also cosine, l2, ip; case-insensitive)",
    "enum": [
     "Cosine",
     "Euclid",
     "Dot",
     "cosine",
     "l2",
     "ip"
    ]
   },
   "VectorParams": {
    "type": "object",
    "required": [
     "size",
     "distance"
    ],
    "additionalProperties": false,
    "properties": {
     "size": {
      "type": "integer",
      "minimum": 1,
      "maximum": 65536
     },
     "distance": {
      "$ref": "#/components/schemas/Distance"
     },
     "index": {
      "type": "string",
      "default": "HNSW32",
      "description": "factory string: Flat, HNSW32, HNSW32,SQ8, ..."
     }
    }
   },
   "CreateCollection": {
    "type": "object",
    "required": [
     "vectors"
    ],
    "additionalProperties": false,
    "properties": {
     "vectors": {
      "oneOf": [
       {
        "$ref": "#/components/schemas/VectorParams"
       },
       {
        "type": "object",
        "additionalProperties": {
         "$ref": "#/components/schemas/VectorParams"
        },
        "description": "named vectors"
       }
      ]
     },
     "indexed_fields": {
      "type": "object",
      "additionalProperties": {
       "type": "string",
       "enum": [
        "keyword",
        "integer",
        "float",
        "bool"
       ]
      }
     }
    }
   },
   "CollectionInfo": {
    "type": "object",
    "properties": {
     "name": {
      "type": "string"
     },
     "status": {
      "type": "string"
     },
     "points_count": {
      "type": "integer"
     },
     "memory_bytes": {
      "type": "integer"
     },
     "config": {
      "type": "object",
      "properties": {
       "vectors": {},
       "indexed_fields": {
        "type": "object"
       }
      }
     }
    }
   },
   "PointId": {
    "oneOf": [
     {
      "type": "integer",
      "minimum": 0,
      "format": "uint64"
     },
     {
      "type": "string",
      "minLength": 1,
      "maxLength": 256
     }
    ]
   },
   "Vector": {
    "oneOf": [
     {
      "type": "array",
      "items": {
       "type": "number",
       "format": "float"
      }
     },
     {
      "type": "string",
      "format": "byte",
      "description": "base64 of little-endian float32 values"
     }
    ]
   },
   "Vectors": {
    "oneOf": [
     {
      "$ref": "#/components/schemas/Vector"
     },
     {
      "type": "object",
      "additionalProperties": {
       "$ref": "#/components/schemas/Vector"
      },
      "description": "named vectors"
     }
    ]
   },
   "Payload": {
    "type": "object",
    "additionalProperties": true
   },
   "Point": {
    "type": "object",
    "required": [
     "id",
     "vector"
    ],
    "additionalProperties": false,
    "properties": {
     "id": {
      "$ref": "#/components/schemas/PointId"
     },
     "vector": {
      "$ref": "#/components/schemas/Vectors"
     },
     "payload": {
      "$ref": "#/components/schemas/Payload"
     }
    }
   },
   "Batch": {
    "type": "object",
    "required": [
     "ids",
     "vectors"
    ],
    "additionalProperties": false,
    "properties": {
     "ids": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/PointId"
      }
     },
     "vectors": {
      "oneOf": [
       {
        "type": "array",
        "items": {
         "$ref": "#/components/schemas/Vector"
        }
       },
       {
        "type": "string",
        "format": "byte",
        "description": "base64 of ids.length x dim little-endian float32"
       },
       {
        "type": "object",
        "description": "per named vector: an array of vectors or one base64 string"
       }
      ]
     },
     "payloads": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/Payload"
      }
     }
    }
   },
   "UpsertRequest": {
    "type": "object",
    "additionalProperties": false,
    "description": "exactly one of points or batch; at most max_batch points",
    "properties": {
     "points": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/Point"
      }
     },
     "batch": {
      "$ref": "#/components/schemas/Batch"
     }
    }
   },
   "UpdateResult": {
    "type": "object",
    "properties": {
     "status": {
      "type": "string",
      "enum": [
       "completed"
      ]
     },
     "upserted": {
      "type": "integer"
     },
     "deleted": {
      "type": "integer"
     }
    }
   },
   "GetPointsRequest": {
    "type": "object",
    "required": [
     "ids"
    ],
    "additionalProperties": false,
    "properties": {
     "ids": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/PointId"
      }
     },
     "with_payload": {
      "type": "boolean",
      "default": true
     },
     "with_vector": {
      "type": "boolean",
      "default": false
     },
     "with_vectors": {
      "type": "boolean",
      "default": false
     }
    }
   },
   "Record": {
    "type": "object",
    "properties": {
     "id": {
      "$ref": "#/components/schemas/PointId"
     },
     "payload": {
      "$ref": "#/components/schemas/Payload"
     },
     "vector": {
      "$ref": "#/components/schemas/Vectors"
     }
    }
   },
   "Filter": {
    "oneOf": [
     {
      "type": "object",
      "description": "Qdrant form: {\"must\": [...], \"should\": [...], \"must_not\": [...]} of {\"key\", \"match\": {\"value\"}} / {\"key\", \"range\": {\"gt\", \"gte\", \"lt\", \"lte\"}}",
      "properties": {
       "must": {
        "type": "array",
        "items": {
         "type": "object"
        }
       },
       "should": {
        "type": "array",
        "items": {
         "type": "object"
        }
       },
       "must_not": {
        "type": "array",
        "items": {
         "type": "object"
        }
       }
      }
     },
     {
      "type": "string",
      "description": "text form: category = \"shoe\" AND price < 50 AND NOT sold"
     }
    ]
   },
   "DeleteRequest": {
    "type": "object",
    "additionalProperties": false,
    "description": "exactly one of points or filter",
    "properties": {
     "points": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/PointId"
      }
     },
     "filter": {
      "$ref": "#/components/schemas/Filter"
     }
    }
   },
   "CountRequest": {
    "type": "object",
    "additionalProperties": false,
    "properties": {
     "filter": {
      "$ref": "#/components/schemas/Filter"
     },
     "exact": {
      "type": "boolean",
      "description": "accepted for Qdrant clients; counts are always exact"
     }
    }
   },
   "SearchRequest": {
    "type": "object",
    "required": [
     "vector"
    ],
    "additionalProperties": false,
    "properties": {
     "vector": {
      "oneOf": [
       {
        "$ref": "#/components/schemas/Vector"
       },
       {
        "type": "object",
        "required": [
         "name",
         "vector"
        ],
        "properties": {
         "name": {
          "type": "string"
         },
         "vector": {
          "$ref": "#/components/schemas/Vector"
         }
        }
       }
      ]
     },
     "limit": {
      "type": "integer",
      "minimum": 1,
      "default": 10,
      "description": "k; limit + offset at most max_k (10000)"
     },
     "offset": {
      "type": "integer",
      "minimum": 0,
      "default": 0
     },
     "params": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
       "ef": {
        "type": "integer",
        "minimum": 0,
        "maximum": 100000
       },
       "hnsw_ef": {
        "type": "integer",
        "minimum": 0,
        "maximum": 100000
       }
      }
     },
     "filter": {
      "$ref": "#/components/schemas/Filter"
     },
     "with_payload": {
      "type": "boolean",
      "default": false
     },
     "with_vector": {
      "type": "boolean",
      "default": false
     },
     "with_vectors": {
      "type": "boolean",
      "default": false
     }
    }
   },
   "BatchSearchRequest": {
    "type": "object",
    "required": [
     "searches"
    ],
    "additionalProperties": false,
    "properties": {
     "searches": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/SearchRequest"
      }
     }
    }
   },
   "ScoredPoint": {
    "type": "object",
    "properties": {
     "id": {
      "$ref": "#/components/schemas/PointId"
     },
     "score": {
      "type": "number",
      "description": "Cosine: similarity; Dot: inner product; Euclid: Euclidean distance"
     },
     "distance": {
      "type": "number",
      "description": "the library's distance, smaller is closer"
     },
     "payload": {
      "$ref": "#/components/schemas/Payload"
     },
     "vector": {
      "$ref": "#/components/schemas/Vectors"
     }
    }
   },
   "SnapshotInfo": {
    "type": "object",
    "properties": {
     "name": {
      "type": "string"
     },
     "collection": {
      "type": "string"
     },
     "creation_time": {
      "type": "string",
      "format": "date-time"
     },
     "size": {
      "type": "integer"
     }
    }
   },
   "RecoverRequest": {
    "type": "object",
    "required": [
     "snapshot"
    ],
    "additionalProperties": false,
    "properties": {
     "snapshot": {
      "type": "string",
      "description": "a snapshot name from GET /collections/{name}/snapshots"
     },
     "name": {
      "type": "string",
      "description": "the new collection's name; default: {name}"
     }
    }
   }
  }
 }
})json";
  return kDocument;
}

}  // namespace fathom::server
