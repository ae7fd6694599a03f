"""The web studio: train, try, inspect and download soft prompts from a browser page (`softprompt studio`)."""
